//! Test-only echo server (not shipped): `rk-echo TCP_PORT [UDP_PORT [TAG]]` (TAG is ignored:
//! it only makes the process findable by its command line).
//!
//! TCP on 0.0.0.0 and [::]: one thread per connection copies everything back and, at EOF
//! from the client (half-close), finishes sending and closes. UDP: every datagram is sent
//! back to its sender. Used inside the namespace by tests/tests/reliability.rs.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};

fn serve(mut s: TcpStream) {
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
    let _ = s.shutdown(Shutdown::Write);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let tcp: u16 = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .expect("usage: rk-echo TCP_PORT [UDP_PORT]");
    let listener = TcpListener::bind(("::", tcp))
        .or_else(|_| TcpListener::bind(("0.0.0.0", tcp)))
        .expect("bind tcp");
    if let Some(udp) = args.get(2).and_then(|s| s.parse::<u16>().ok()) {
        let sock = UdpSocket::bind(("::", udp))
            .or_else(|_| UdpSocket::bind(("0.0.0.0", udp)))
            .expect("bind udp");
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(&buf[..n], from);
            }
        });
    }
    eprintln!("rk-echo: listening tcp {tcp}");
    for s in listener.incoming() {
        match s {
            Ok(s) => {
                std::thread::spawn(move || serve(s));
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
}
