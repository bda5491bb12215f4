//! DHCPv4 client.
