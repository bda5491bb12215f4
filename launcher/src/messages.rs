//! Parent<->child handshake messages (owner: lead). One JSON message per SEQPACKET packet.
