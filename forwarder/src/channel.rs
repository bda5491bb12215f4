//! Parent<->child socket channel (owner: forwarder helper). See crate docs.
