//! The message log's evidence format (报文日志证据包): how entries are chained and how a bundle
//! is laid out so that an auditor checks it with standard tools alone (`verify.sh`: a POSIX
//! shell, `sha256sum`, `openssl`) — no program of ours in the trust path.
//!
//! Each entry is a short text record (its *meta*) naming the message and the SHA-256 of its
//! exact bytes; the entry's hash is the SHA-256 of its meta, and each meta names the hash of
//! the entry before it (`prev`): a hash chain. Changing one byte of a body changes its digest;
//! changing a meta changes its hash and breaks the next entry's `prev`; deleting or moving an
//! entry leaves a gap in the positions. The hub signs checkpoints that name the hash at a
//! position, so the chain's end cannot be rewritten either, and signs where an export starts.
//!
//! This module is pure: it makes the texts and the chain, and lays out a bundle given what goes
//! into it.

use std::io;
use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use sha2::Digest;
use uuid::Uuid;

/// The check an auditor runs in a bundle.
pub const VERIFY_SH: &str = include_str!("verify.sh");

/// The `prev` of the first entry of the log.
pub const GENESIS: [u8; 32] = [0; 32];

/// Which way a message went through the hub: the message trace's.
pub use crate::store::trace::Direction;

/// One message in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub position: i64,
    pub at: DateTime<Utc>,
    pub direction: Direction,
    /// The province it came from or went to (`prov-37`).
    pub party: String,
    pub message_id: Uuid,
    pub message_type: String,
    pub case_id: Option<Uuid>,
    /// The problem group it is about; its line is written only then, so entries logged
    /// before groups were recorded keep their hashes.
    pub group_id: Option<Uuid>,
    /// SHA-256 of the exact bytes sent.
    pub body_sha256: [u8; 32],
    /// The fingerprint of the certificate whose key signed the bytes, when signed.
    pub signer: Option<String>,
}

/// Lower-case hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A value on one line of a meta: what the hub writes there is its own (ids, party codes,
/// message types), but a line break in it would forge a field, so none is kept.
fn line(value: &str) -> String {
    value.chars().filter(|c| !c.is_control()).collect()
}

impl Entry {
    /// The entry's text, chained to `prev`.
    pub fn meta(&self, prev: &[u8; 32]) -> String {
        format!(
            "xueji-message-log 1\nposition: {}\nat: {}\ndirection: {}\nparty: {}\nmessage-id: {}\nmessage-type: {}\n\
             case-id: {}\n{}signer: {}\nbody-sha256: {}\nprev: {}\n",
            self.position,
            self.at.to_rfc3339_opts(SecondsFormat::Millis, true),
            self.direction.as_str(),
            line(&self.party),
            self.message_id,
            line(&self.message_type),
            self.case_id.map_or_else(|| "-".to_owned(), |c| c.to_string()),
            self.group_id.map_or_else(String::new, |g| format!("group-id: {g}\n")),
            self.signer.as_deref().map_or_else(|| "-".to_owned(), line),
            hex(&self.body_sha256),
            hex(prev),
        )
    }

    /// The entry's hash: SHA-256 of its meta.
    pub fn hash(&self, prev: &[u8; 32]) -> [u8; 32] {
        sha2::Sha256::digest(self.meta(prev).as_bytes()).into()
    }
}

/// The hashes of `entries`, in order, the first chained to `prev`.
pub fn chain(prev: [u8; 32], entries: &[Entry]) -> Vec<[u8; 32]> {
    let mut prev = prev;
    entries
        .iter()
        .map(|e| {
            prev = e.hash(&prev);
            prev
        })
        .collect()
}

/// The hub's statement that the log's entry at `position` has `hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub position: i64,
    pub hash: [u8; 32],
    pub at: DateTime<Utc>,
}

impl Checkpoint {
    /// The text the hub signs.
    pub fn meta(&self) -> String {
        format!(
            "xueji-message-log-checkpoint 1\nposition: {}\nhash: {}\nat: {}\n",
            self.position,
            hex(&self.hash),
            self.at.to_rfc3339_opts(SecondsFormat::Millis, true)
        )
    }
}

/// Where an export starts, and what it holds: the text the hub signs when it exports.
pub fn export_meta(first: &Entry, prev: &[u8; 32], selection: &str, at: DateTime<Utc>) -> String {
    format!(
        "xueji-message-log-export 1\nposition: {}\nprev: {}\nselection: {}\nexported-at: {}\n",
        first.position,
        hex(prev),
        line(selection),
        at.to_rfc3339_opts(SecondsFormat::Millis, true)
    )
}

/// An entry as exported: its bytes and signature when the selection holds it (the entries in
/// between are exported by their meta only, which keeps the chain checkable without showing
/// other cases' messages).
pub struct Exported {
    pub entry: Entry,
    pub body: Option<Vec<u8>>,
    /// The signature over `body`, as made (DER for ECDSA).
    pub signature: Option<Vec<u8>>,
}

/// What a bundle holds.
pub struct Bundle {
    /// The `prev` of the first entry.
    pub prev: [u8; 32],
    /// Consecutive entries, the last one sealed by `checkpoint`.
    pub entries: Vec<Exported>,
    /// The certificates of the signers (fingerprint, PEM).
    pub certificates: Vec<(String, String)>,
    /// The hub's certificate (PEM): it signed the checkpoint and the export.
    pub hub_certificate: String,
    /// The checkpoint and the hub's signature of its meta.
    pub checkpoint: (Checkpoint, Vec<u8>),
    /// The export's meta ([`export_meta`]) and the hub's signature of it.
    pub export: (String, Vec<u8>),
}

/// The files of `bundle`, by their path in it: `export.meta`/`.sig`,
/// `entries/NNNNNNNNNNNN.meta` (`.body`, `.sig`), `certs/<fingerprint>.pem`, `certs/hub.pem`,
/// `checkpoint.meta`/`.sig`, `verify.sh`.
pub fn files(bundle: &Bundle) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = vec![
        ("export.meta".into(), bundle.export.0.clone().into_bytes()),
        ("export.sig".into(), bundle.export.1.clone()),
    ];
    let mut prev = bundle.prev;
    for e in &bundle.entries {
        // Twelve digits: the shell's glob orders them as positions.
        let stem = format!("entries/{:012}", e.entry.position);
        out.push((format!("{stem}.meta"), e.entry.meta(&prev).into_bytes()));
        if let Some(body) = &e.body {
            out.push((format!("{stem}.body"), body.clone()));
        }
        if let Some(signature) = &e.signature {
            out.push((format!("{stem}.sig"), signature.clone()));
        }
        prev = e.entry.hash(&prev);
    }
    for (fingerprint, pem) in &bundle.certificates {
        out.push((format!("certs/{}.pem", line(fingerprint)), pem.clone().into_bytes()));
    }
    out.push(("certs/hub.pem".into(), bundle.hub_certificate.clone().into_bytes()));
    out.push(("checkpoint.meta".into(), bundle.checkpoint.0.meta().into_bytes()));
    out.push(("checkpoint.sig".into(), bundle.checkpoint.1.clone()));
    out.push(("verify.sh".into(), VERIFY_SH.as_bytes().to_vec()));
    out
}

/// Lays `bundle` out in `dir` (made if missing): [`files`].
///
/// # Errors
/// File-system errors.
pub fn write(dir: &Path, bundle: &Bundle) -> io::Result<()> {
    for (name, bytes) in files(bundle) {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, bytes)?;
    }
    Ok(())
}

/// `bundle` as a tar archive (POSIX ustar) whose files sit under `root/`: one download that
/// `tar -xf` unpacks anywhere, then `sh root/verify.sh`.
///
/// # Errors
/// A name too long for the format (none the hub makes).
pub fn tar(root: &str, bundle: &Bundle, at: DateTime<Utc>) -> io::Result<Vec<u8>> {
    let mut archive = ::tar::Builder::new(Vec::new());
    let mtime = u64::try_from(at.timestamp()).unwrap_or(0);
    let mut dirs = std::collections::BTreeSet::new();
    for (name, bytes) in files(bundle) {
        let path = format!("{root}/{name}");
        if let Some((dir, _)) = path.rsplit_once('/')
            && dirs.insert(dir.to_owned())
        {
            let mut header = ::tar::Header::new_ustar();
            header.set_entry_type(::tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_mtime(mtime);
            header.set_size(0);
            archive.append_data(&mut header, format!("{dir}/"), io::empty())?;
        }
        let mut header = ::tar::Header::new_ustar();
        header.set_mode(if name.ends_with(".sh") { 0o755 } else { 0o644 });
        header.set_mtime(mtime);
        header.set_size(bytes.len() as u64);
        archive.append_data(&mut header, path, bytes.as_slice())?;
    }
    archive.into_inner()
}

#[cfg(test)]
mod tests;
