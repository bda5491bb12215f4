//! Kernel feature probe (owner: forwarder helper).
