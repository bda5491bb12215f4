//! `forwarder::channel`: the child side of the parent<->child socket channel decoding
//! arbitrary request packets (`serve_child` over a `SOCK_SEQPACKET` pair, as in the
//! launcher). Input: packets as `len (1 byte, mod 65) + bytes`. The parent end is closed after
//! the packets, so `serve_child` must return. Invariants: no panic, no hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

fuzz_target!(|data: &[u8]| {
    let (parent, child) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .expect("socketpair");
    let mut rest = data;
    let mut packets = 0;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len % 65).min(tail.len());
        let (pkt, tail) = tail.split_at(len);
        rest = tail;
        if pkt.is_empty() {
            continue; // a zero-length packet reads as "closed"
        }
        if nix::sys::socket::send(
            std::os::fd::AsRawFd::as_raw_fd(&parent),
            pkt,
            nix::sys::socket::MsgFlags::MSG_DONTWAIT,
        )
        .is_err()
        {
            break;
        }
        packets += 1;
        if packets >= 16 {
            break;
        }
    }
    drop(parent);
    let _ = forwarder::channel::serve_child(child, None);
});
