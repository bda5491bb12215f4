//! Shared pieces of the criterion benches in `benches/benches/`.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Loopback servers the benches forward to.
pub struct Targets {
    /// Reads to EOF, then writes one byte (`k`).
    pub sink: u16,
    /// Echoes everything (TCP_NODELAY).
    pub echo: u16,
}

/// Start the sink and echo servers (a thread per connection).
pub fn targets() -> Targets {
    let sink = TcpListener::bind("127.0.0.1:0").expect("bind");
    let echo = TcpListener::bind("127.0.0.1:0").expect("bind");
    let t = Targets {
        sink: sink.local_addr().expect("addr").port(),
        echo: echo.local_addr().expect("addr").port(),
    };
    std::thread::spawn(move || {
        for s in sink.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = vec![0u8; 256 * 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                }
                let _ = s.write_all(b"k");
            });
        }
    });
    std::thread::spawn(move || {
        for s in echo.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let _ = s.set_nodelay(true);
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    t
}

/// A port that was free a moment ago (bound and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// One bulk transfer through `port` to the sink: write `data`, half-close, wait for the ack.
pub fn bulk_once(port: u16, data: &[u8]) -> Duration {
    let t0 = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(data).expect("write");
    s.shutdown(Shutdown::Write).expect("shutdown");
    let mut k = [0u8; 1];
    s.read_exact(&mut k).expect("ack");
    t0.elapsed()
}
