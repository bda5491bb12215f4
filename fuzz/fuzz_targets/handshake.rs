//! `launcher::messages`: decoding of one parent<->child handshake packet (JSON of `Message`,
//! at most `MAX_MESSAGE` bytes, exactly what `messages::recv` does), plus the real
//! send/recv path over a `SOCK_SEQPACKET` pair. Invariants: no panic; a decoded message
//! re-encodes and decodes to the same value.
#![no_main]

use launcher::messages::{self, Message, MAX_MESSAGE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_MESSAGE {
        return;
    }
    if let Ok(msg) = serde_json::from_slice::<Message>(data) {
        let json = serde_json::to_vec(&msg).expect("serialise Message");
        let again: Message = serde_json::from_slice(&json).expect("decode own JSON");
        assert_eq!(format!("{again:?}"), format!("{msg:?}"));
        let (a, b) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::SeqPacket,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .expect("socketpair");
        if json.len() <= MAX_MESSAGE {
            messages::send(&a, &msg).expect("send");
            let got = messages::recv(&b).expect("recv");
            assert_eq!(format!("{got:?}"), format!("{msg:?}"));
        }
    }
});
