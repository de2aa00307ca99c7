//! The certificate revocation list (证书吊销列表) the broker checks at every TLS handshake.
//!
//! The exchange CA signs one CRL. It is published into a directory the broker reads on every
//! client handshake (Erlang `ssl_crl_hash_dir`, the OpenSSL `c_rehash` convention: the file is
//! named `<issuer-name-hash>.r0`). Publication only ever adds: the new list is the union of the
//! one already published (checked against the CA's key) and the serials given, so no command,
//! run by anyone in any order, can take a revoked certificate off the list.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use rcgen::{CertificateRevocationListParams, Issuer, KeyIdMethod, RevokedCertParams, SerialNumber};
use sha1::Digest as _;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::files::{io, write_public};
use crate::{Ca, CertError, pem_block, to_time};

/// How long a published CRL stays current. The broker does not refuse a stale CRL, but other
/// verifiers may; each publication (every revocation, and `hub certs crl`) renews it.
pub const CRL_VALIDITY_DAYS: i64 = 30;

/// One revoked certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// Lower-case hexadecimal, without separators (as [`crate::CertInfo::serial`]).
    pub serial: String,
    pub revoked_at: DateTime<Utc>,
}

/// A CRL read back and checked against the CA's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crl {
    pub number: u64,
    pub this_update: DateTime<Utc>,
    pub next_update: Option<DateTime<Utc>>,
    pub revoked: Vec<Revocation>,
}

impl Crl {
    /// Parses a PEM CRL and checks that `ca_der` signed it.
    ///
    /// # Errors
    /// Not a CRL, or not signed by this CA ([`CertError::WrongIssuer`]).
    pub fn parse_verified(pem: &[u8], ca_der: &[u8]) -> Result<Crl, CertError> {
        let (_, block) = x509_parser::pem::parse_x509_pem(pem).map_err(|e| CertError::Pem(e.to_string()))?;
        if block.label != "X509 CRL" {
            return Err(CertError::Pem(format!("a {} block, not an X509 CRL", block.label)));
        }
        let (_, crl) = x509_parser::parse_x509_crl(&block.contents).map_err(|e| CertError::Parse(e.to_string()))?;
        let (_, ca) = X509Certificate::from_der(ca_der).map_err(|e| CertError::Parse(e.to_string()))?;
        crl.verify_signature(ca.public_key()).map_err(|_| CertError::WrongIssuer)?;
        let ts = |t: i64| DateTime::from_timestamp(t, 0).unwrap_or_default();
        let number = crl.crl_number().and_then(|n| u64::try_from(n.clone()).ok()).unwrap_or(0);
        Ok(Crl {
            number,
            this_update: ts(crl.last_update().timestamp()),
            next_update: crl.next_update().map(|t| ts(t.timestamp())),
            revoked: crl
                .iter_revoked_certificates()
                .map(|r| Revocation {
                    serial: crate::hex(r.raw_serial()),
                    revoked_at: ts(r.revocation_date.timestamp()),
                })
                .collect(),
        })
    }

    /// Whether `serial` (hexadecimal, any case, colons allowed) is on the list.
    pub fn lists(&self, serial: &str) -> bool {
        let serial = normalize_serial(serial);
        self.revoked.iter().any(|r| r.serial == serial)
    }
}

/// Lower-case hexadecimal without separators or leading zero octets' ambiguity removed.
pub fn normalize_serial(serial: &str) -> String {
    serial.to_ascii_lowercase().replace(':', "")
}

impl Ca {
    /// Signs a CRL listing `revoked`, numbered `number`, current from `now` for
    /// [`CRL_VALIDITY_DAYS`].
    ///
    /// # Errors
    /// A serial that is not hexadecimal, or a signing failure.
    pub fn sign_crl(&self, revoked: &[Revocation], number: u64, now: DateTime<Utc>) -> Result<String, CertError> {
        let mut revoked_certs = Vec::with_capacity(revoked.len());
        for r in revoked {
            let bytes =
                unhex(&r.serial).ok_or_else(|| CertError::Parse(format!("serial `{}` is not hex", r.serial)))?;
            revoked_certs.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&bytes),
                revocation_time: to_time(r.revoked_at),
                reason_code: None,
                invalidity_date: None,
            });
        }
        let params = CertificateRevocationListParams {
            this_update: to_time(now - Duration::minutes(5)),
            next_update: to_time(now + Duration::days(CRL_VALIDITY_DAYS)),
            crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let issuer = Issuer::from_ca_cert_pem(self.cert_pem(), self.key())?;
        let crl = params.signed_by(&issuer)?;
        Ok(pem_block("X509 CRL", crl.der()))
    }
}

/// The file name the broker looks for this CA's CRL under: `<hash>.r0`, where the hash is
/// OpenSSL's `X509_NAME_hash` of the CA's subject (the first four bytes, little-endian, of the
/// SHA-1 of the canonical encoding of the name), which is also what Erlang's
/// `public_key:short_name_hash/1` computes.
///
/// # Errors
/// An unparsable CA certificate.
pub fn crl_file_name(ca_der: &[u8]) -> Result<String, CertError> {
    let (_, ca) = X509Certificate::from_der(ca_der).map_err(|e| CertError::Parse(e.to_string()))?;
    let mut canonical = Vec::new();
    for rdn in ca.subject().iter_rdn() {
        let mut set = Vec::new();
        for atv in rdn.iter() {
            let mut seq = der(0x06, atv.attr_type().as_bytes());
            match atv.as_str() {
                // String values are compared case- and space-insensitively: UTF8String of the
                // trimmed, space-collapsed, lower-cased text.
                Ok(text) => seq.extend(der(0x0c, canonical_text(text).as_bytes())),
                Err(_) => {
                    let value = atv.attr_value();
                    seq.extend(der(value.tag().0 as u8, value.as_bytes()));
                }
            }
            set.extend(der(0x30, &seq));
        }
        canonical.extend(der(0x31, &set));
    }
    let digest = sha1::Sha1::digest(&canonical);
    let hash = u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]);
    Ok(format!("{hash:08x}.r0"))
}

fn canonical_text(text: &str) -> String {
    text.split_ascii_whitespace().collect::<Vec<_>>().join(" ").to_ascii_lowercase()
}

/// A DER TLV with a definite length.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = normalize_serial(s);
    if s.is_empty() || !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

/// What a publication wrote.
#[derive(Debug, Clone)]
pub struct Published {
    pub path: PathBuf,
    pub number: u64,
    /// Serials on the published list.
    pub listed: usize,
}

/// The CRL published in `dir` for the CA whose certificate is `ca_der`, checked against its
/// key; `None` when none is there.
///
/// # Errors
/// A file that is not a CRL of this CA (never silently ignored: it would hide revocations).
pub fn read_published(dir: &Path, ca_der: &[u8]) -> Result<Option<Crl>, CertError> {
    let path = dir.join(crl_file_name(ca_der)?);
    match std::fs::read(&path) {
        Ok(pem) => Crl::parse_verified(&pem, ca_der).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&path)(e)),
    }
}

/// Publishes the CA's CRL in `dir`: what is published there already, plus `revoked`. Writers
/// are serialized by a lock on the directory and the file is replaced atomically, so the
/// broker always reads a whole list and no revocation is lost between two writers.
///
/// # Errors
/// An unwritable directory, an existing list that does not verify, or a signing failure.
pub fn publish(dir: &Path, ca: &Ca, revoked: &[Revocation], now: DateTime<Utc>) -> Result<Published, CertError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let lock_path = dir.join(".crl.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io(&lock_path))?;
    lock.lock().map_err(io(&lock_path))?;

    let existing = read_published(dir, ca.cert_der())?;
    let mut all: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    for r in existing.iter().flat_map(|c| c.revoked.iter()).chain(revoked) {
        let at = all.entry(normalize_serial(&r.serial)).or_insert(r.revoked_at);
        *at = (*at).min(r.revoked_at);
    }
    let list: Vec<Revocation> = all.into_iter().map(|(serial, revoked_at)| Revocation { serial, revoked_at }).collect();
    let number = existing.map_or(1, |c| c.number + 1);
    let pem = ca.sign_crl(&list, number, now)?;

    let path = dir.join(crl_file_name(ca.cert_der())?);
    let tmp = dir.join(format!(".crl.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    write_public(&tmp, &pem)?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok(Published { path, number, listed: list.len() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Profile, Role};

    #[test]
    fn the_crl_lists_what_was_revoked_and_verifies_only_against_its_ca() {
        let ca = Ca::create("Test CA", 30).unwrap();
        let leaf = ca.issue(&Profile::new(Role::Hub, 10)).unwrap();
        let now = Utc::now();
        let pem = ca.sign_crl(&[Revocation { serial: leaf.info.serial.clone(), revoked_at: now }], 7, now).unwrap();
        let crl = Crl::parse_verified(pem.as_bytes(), ca.cert_der()).unwrap();
        assert_eq!(crl.number, 7);
        assert!(crl.lists(&leaf.info.serial));
        assert!(crl.lists(&leaf.info.serial.to_ascii_uppercase()));
        let other = Ca::create("Test CA", 30).unwrap();
        assert!(matches!(Crl::parse_verified(pem.as_bytes(), other.cert_der()), Err(CertError::WrongIssuer)));
    }

    #[test]
    fn publishing_only_ever_adds_to_the_list() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::create("Test CA", 30).unwrap();
        let now = Utc::now();
        let first = publish(dir.path(), &ca, &[Revocation { serial: "41aa".into(), revoked_at: now }], now).unwrap();
        assert_eq!((first.number, first.listed), (1, 1));
        let second = publish(dir.path(), &ca, &[Revocation { serial: "41bb".into(), revoked_at: now }], now).unwrap();
        assert_eq!((second.number, second.listed), (2, 2));
        let empty = publish(dir.path(), &ca, &[], now).unwrap();
        assert_eq!(empty.listed, 2, "an empty publication keeps what was revoked");
        let crl = read_published(dir.path(), ca.cert_der()).unwrap().unwrap();
        assert!(crl.lists("41aa") && crl.lists("41BB"));
        // A CA of the same name has the same file name: a list it did not sign is never taken
        // over, nor replaced.
        let rogue = Ca::create("Test CA", 30).unwrap();
        assert!(matches!(publish(dir.path(), &rogue, &[], now), Err(CertError::WrongIssuer)));
        assert!(read_published(dir.path(), ca.cert_der()).unwrap().unwrap().lists("41aa"));
    }

    #[test]
    fn the_file_name_is_the_openssl_subject_hash() {
        let ca = Ca::create("Xueji Exchange Development CA", 30).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pem_path = dir.path().join("ca.pem");
        std::fs::write(&pem_path, ca.cert_pem()).unwrap();
        let out = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-subject_hash", "-in"])
            .arg(&pem_path)
            .output()
            .expect("openssl (tests/services.sh installs it)");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let expected = format!("{}.r0", String::from_utf8_lossy(&out.stdout).trim());
        assert_eq!(crl_file_name(ca.cert_der()).unwrap(), expected);
    }
}
