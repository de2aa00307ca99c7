//! What signing costs a message: the sender's signature and the recipient's check, for a
//! typical `index.upsert` (722 bytes) and an archive file (2 MiB), with the exchange's default
//! key (EC P-256), on one core. The throughput bench shows the same cost inside the hub's path.
//!
//! `cargo bench -p e2e --bench signing` (`BENCH_ROUNDS` to change the rounds).

use std::time::Instant;

use certs::signature::{Signer, Verifier};
use certs::{Ca, Profile, Role};

fn main() {
    let rounds: u32 = std::env::var("BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5000);
    let ca = Ca::create("Signing bench CA", 30).expect("a CA");
    let made = ca.issue(&Profile::new(Role::Province("37".parse().unwrap()), 30)).expect("issued");
    let signer = Signer::from_pem(made.cert_pem.as_bytes(), made.key_pem.as_bytes()).expect("its key");
    let verifier = Verifier::of_der(&made.info.der).expect("its certificate");
    let small = schemas::codec::to_xml(&e2e::index_upsert("37", vec![e2e::student("37", 1)])).into_bytes();
    let large = vec![0x5a_u8; 2 << 20];
    println!("signing: EC P-256, {rounds} rounds (large: {} rounds)", (rounds / 100).max(10));
    for (what, body, n) in [("index.upsert", &small, rounds), ("2 MiB file", &large, (rounds / 100).max(10))] {
        let started = Instant::now();
        let mut signature = signer.sign(body);
        for _ in 1..n {
            signature = signer.sign(body);
        }
        let sign = started.elapsed() / n;
        let started = Instant::now();
        for _ in 0..n {
            verifier.check(body, &signature).expect("verifies");
        }
        let verify = started.elapsed() / n;
        println!(
            "  {what:>12} ({:>7} B): sign {:>8.1} µs, verify {:>8.1} µs, both {:>8.1} µs per message",
            body.len(),
            sign.as_secs_f64() * 1e6,
            verify.as_secs_f64() * 1e6,
            (sign + verify).as_secs_f64() * 1e6
        );
    }
}
