//! A bundle checked by `verify.sh` with the standard tools, and every tampering an auditor must
//! catch named by it: a byte of a body, an entry deleted, two reordered, a meta changed, the end
//! cut off, a signature swapped, the start moved.

use std::path::Path;
use std::process::Command;

use certs::signature::Signer;
use certs::{Ca, Profile, Role};
use chrono::TimeZone;

use super::*;

fn signer(ca: &Ca, role: Role) -> (Signer, String) {
    let made = ca.issue(&Profile::new(role, 30)).unwrap();
    (Signer::from_pem(made.cert_pem.as_bytes(), made.key_pem.as_bytes()).unwrap(), made.cert_pem)
}

/// Five entries: 1, 3 and 5 of the case exported (37's messages, signed), 2 and 4 of other
/// cases (meta only); the log before them chained to `prev`.
fn bundle(dir: &Path) {
    write(dir, &made()).unwrap();
}

fn made() -> Bundle {
    let ca = Ca::create("Evidence test CA", 30).unwrap();
    let (province, province_pem) = signer(&ca, Role::Province("37".parse().unwrap()));
    let (hub, hub_pem) = signer(&ca, Role::Hub);
    let prev = [7u8; 32];
    let at = Utc.with_ymd_and_hms(2026, 9, 1, 8, 0, 0).unwrap();
    let case = Uuid::from_u128(42);
    let entries: Vec<Exported> = (1..=5)
        .map(|position| {
            let ours = position % 2 == 1;
            let body = format!("<envelope n=\"{position}\">学籍 {position}</envelope>").into_bytes();
            let entry = Entry {
                position: 100 + position,
                at: at + chrono::Duration::seconds(position),
                direction: if position == 5 { Direction::Out } else { Direction::In },
                party: "prov-37".into(),
                message_id: Uuid::from_u128(position as u128),
                message_type: "transfer.apply".into(),
                case_id: Some(if ours { case } else { Uuid::from_u128(7) }),
                group_id: (position == 3).then(|| Uuid::from_u128(9)),
                body_sha256: sha2::Sha256::digest(&body).into(),
                signer: Some(province.fingerprint().to_owned()),
            };
            let signature = ours.then(|| province.sign(&body).value);
            Exported { entry, body: ours.then_some(body), signature }
        })
        .collect();
    let plain: Vec<Entry> = entries.iter().map(|e| e.entry.clone()).collect();
    let hashes = chain(prev, &plain);
    let checkpoint = Checkpoint { position: 105, hash: hashes[4], at: at + chrono::Duration::minutes(5) };
    let checkpoint_sig = hub.sign(checkpoint.meta().as_bytes()).value;
    let export = export_meta(&plain[0], &prev, &format!("case {case}"), at + chrono::Duration::days(1));
    let export_sig = hub.sign(export.as_bytes()).value;
    Bundle {
        prev,
        entries,
        certificates: vec![(province.fingerprint().to_owned(), province_pem)],
        hub_certificate: hub_pem,
        checkpoint: (checkpoint, checkpoint_sig),
        export: (export, export_sig),
    }
}

/// What `sh verify.sh` says and whether it passed.
fn verify(dir: &Path) -> (bool, String) {
    let out = Command::new("sh").arg(dir.join("verify.sh")).output().expect("sh");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn entry(dir: &Path, position: i64, ext: &str) -> std::path::PathBuf {
    dir.join("entries").join(format!("{position:012}.{ext}"))
}

#[test]
fn an_untouched_bundle_verifies_with_standard_tools() {
    let dir = tempfile::tempdir().unwrap();
    bundle(dir.path());
    let (ok, said) = verify(dir.path());
    assert!(ok, "{said}");
    assert!(said.contains("OK: 5 entries chained, 3 signatures verified"), "{said}");
}

#[test]
fn the_bundle_as_one_tar_unpacks_with_tar_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let at = Utc.with_ymd_and_hms(2026, 9, 2, 8, 0, 0).unwrap();
    let made = made();
    let archive = tar("problem-42", &made, at).unwrap();
    std::fs::write(dir.path().join("b.tar"), &archive).unwrap();
    let out = Command::new("tar").arg("-xf").arg("b.tar").current_dir(dir.path()).output().expect("tar");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (ok, said) = verify(&dir.path().join("problem-42"));
    assert!(ok && said.contains("OK: 5 entries chained, 3 signatures verified"), "{said}");
    let files = files(&made);
    assert_eq!(files.iter().filter(|(n, _)| n.ends_with(".body")).count(), 3);
}

#[test]
fn every_tampering_is_caught_and_the_entry_named() {
    type Tamper = fn(&Path);
    let cases: [(&str, Tamper, &str); 8] = [
        (
            "a byte of a body",
            |d| {
                let mut b = std::fs::read(entry(d, 103, "body")).unwrap();
                b[5] ^= 1;
                std::fs::write(entry(d, 103, "body"), b).unwrap();
            },
            "BROKEN at entry 103: its body is not the one logged",
        ),
        ("an entry deleted", |d| std::fs::remove_file(entry(d, 102, "meta")).unwrap(), "BROKEN at entry 102: missing"),
        (
            "two entries reordered",
            |d| {
                std::fs::rename(entry(d, 103, "meta"), d.join("x")).unwrap();
                std::fs::rename(entry(d, 104, "meta"), entry(d, 103, "meta")).unwrap();
                std::fs::rename(d.join("x"), entry(d, 104, "meta")).unwrap();
            },
            "BROKEN at entry 103: missing (found entry 104",
        ),
        (
            "a meta changed",
            |d| {
                let m = std::fs::read_to_string(entry(d, 104, "meta")).unwrap();
                std::fs::write(entry(d, 104, "meta"), m.replace("transfer.apply", "transfer.cancel")).unwrap();
            },
            "BROKEN at entry 105: its prev is not the hash of entry 104",
        ),
        (
            "the last entry cut off",
            |d| std::fs::remove_file(entry(d, 105, "meta")).unwrap(),
            "BROKEN at entry 105: the checkpoint seals it, but the bundle ends at entry 104",
        ),
        (
            "a signature swapped",
            |d| std::fs::copy(entry(d, 101, "sig"), entry(d, 103, "sig")).map(drop).unwrap(),
            "BROKEN at entry 103: its signature does not verify",
        ),
        (
            "the first entry dropped and the start moved",
            |d| {
                std::fs::remove_file(entry(d, 101, "meta")).unwrap();
                let m = std::fs::read_to_string(d.join("export.meta")).unwrap();
                std::fs::write(d.join("export.meta"), m.replace("position: 101", "position: 102")).unwrap();
            },
            "BROKEN at the bundle's start: the hub's signature on export.meta does not verify",
        ),
        (
            "the body of a meta-only entry slipped in",
            |d| std::fs::write(entry(d, 104, "body"), b"<envelope>forged</envelope>").unwrap(),
            "BROKEN at entry 104: its body is not the one logged",
        ),
    ];
    for (what, tamper, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        bundle(dir.path());
        tamper(dir.path());
        let (ok, said) = verify(dir.path());
        assert!(!ok, "{what}: passed\n{said}");
        assert!(said.contains(expected), "{what}: {said}");
    }
}

#[test]
fn the_hash_of_an_entry_covers_every_field_and_the_one_before() {
    let e = Entry {
        position: 1,
        at: Utc.with_ymd_and_hms(2026, 9, 1, 8, 0, 0).unwrap(),
        direction: Direction::In,
        party: "prov-37".into(),
        message_id: Uuid::from_u128(1),
        message_type: "index.upsert".into(),
        case_id: None,
        group_id: None,
        body_sha256: [1; 32],
        signer: None,
    };
    let base = e.hash(&GENESIS);
    let changed = [
        Entry { position: 2, ..e.clone() },
        Entry { at: e.at + chrono::Duration::milliseconds(1), ..e.clone() },
        Entry { direction: Direction::Out, ..e.clone() },
        Entry { party: "prov-44".into(), ..e.clone() },
        Entry { message_id: Uuid::from_u128(2), ..e.clone() },
        Entry { message_type: "index.delete".into(), ..e.clone() },
        Entry { case_id: Some(Uuid::from_u128(1)), ..e.clone() },
        Entry { group_id: Some(Uuid::from_u128(1)), ..e.clone() },
        Entry { body_sha256: [2; 32], ..e.clone() },
        Entry { signer: Some("ab".into()), ..e.clone() },
    ];
    for c in &changed {
        assert_ne!(c.hash(&GENESIS), base, "{c:?}");
    }
    assert_ne!(e.hash(&[1; 32]), base, "the previous hash");
    // Without a group the text is the one entries had before groups were recorded: chains
    // sealed then keep their hashes.
    assert_eq!(
        e.meta(&GENESIS),
        format!(
            "xueji-message-log 1\nposition: 1\nat: 2026-09-01T08:00:00.000Z\ndirection: in\nparty: prov-37\n\
             message-id: 00000000-0000-0000-0000-000000000001\nmessage-type: index.upsert\ncase-id: -\nsigner: -\n\
             body-sha256: {}\nprev: {}\n",
            "01".repeat(32),
            "00".repeat(32)
        )
    );
    let grouped = Entry { group_id: Some(Uuid::from_u128(3)), ..e.clone() }.meta(&GENESIS);
    assert!(grouped.contains("\ncase-id: -\ngroup-id: 00000000-0000-0000-0000-000000000003\nsigner: -\n"), "{grouped}");
    // A line break cannot forge a field.
    let forged = Entry { party: "prov-37\nsigner: x".into(), ..e.clone() };
    assert_eq!(forged.meta(&GENESIS).lines().count(), e.meta(&GENESIS).lines().count());
}
