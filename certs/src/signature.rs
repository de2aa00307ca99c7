//! Detached message signatures (报文签名): what makes a message evidence in a dispute.
//!
//! The sender signs the exact bytes it publishes with the key of its exchange certificate; the
//! signature travels beside them in the message's headers, never inside the body, so the body
//! is stored, logged and exported byte for byte as it was signed. The form is the plainest
//! one every tool reads: the signature as the key's algorithm makes it over SHA-256 of the
//! bytes (SHA-384 for a P-384 key), the same bytes `openssl dgst -sha256 -sign` writes and
//! `openssl dgst -sha256 -verify` checks, with the signer named by the SHA-256 fingerprint of
//! its certificate. An auditor needs the bytes, the signature and the certificate, nothing
//! else. (CMS would carry the certificate and a signing time, but the hub's registry already
//! holds every province's certificate, and its message log the time; a CMS structure on each
//! message would only add bytes and a parser.)
//!
//! The algorithm follows from the certificate's key, never from the message: a signature
//! cannot claim a weaker algorithm than its key's.
//!
//! | key | signature | openssl |
//! |---|---|---|
//! | EC P-256 (the exchange's default) | ECDSA, SHA-256, DER | `dgst -sha256` |
//! | EC P-384 | ECDSA, SHA-384, DER | `dgst -sha384` |
//! | RSA (2048 bits or more) | PKCS #1 v1.5, SHA-256 | `dgst -sha256` |
//! | Ed25519 | Ed25519 | `pkeyutl -verify -rawin` |

use std::sync::Arc;

use base64::Engine as _;
use ring::signature::{self as alg, UnparsedPublicKey, VerificationAlgorithm};
use rustls::SignatureScheme;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject as _;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{CertError, CertInfo};

/// The schemes a signer may use, one per key type (see the module's table).
const SCHEMES: [SignatureScheme; 4] = [
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::RSA_PKCS1_SHA256,
    SignatureScheme::ED25519,
];

/// A detached signature and who made it, as carried in a message's headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The signature, in the key's standard encoding (DER for ECDSA).
    pub value: Vec<u8>,
    /// The SHA-256 fingerprint of the signer's certificate, lower-case hexadecimal.
    pub signer: String,
}

impl Signature {
    /// The signature in a header: standard base64.
    pub fn value_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.value)
    }

    /// Reads the two header values.
    ///
    /// # Errors
    /// [`Refusal::Malformed`] when the value is not base64 or the signer not a fingerprint.
    pub fn from_headers(value: &str, signer: &str) -> Result<Signature, Refusal> {
        let value = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .map_err(|_| Refusal::Malformed("the signature is not base64"))?;
        if value.is_empty() || value.len() > 1024 {
            return Err(Refusal::Malformed("the signature's length is not a signature's"));
        }
        let signer = signer.trim().to_ascii_lowercase();
        if signer.len() != 64 || !signer.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Refusal::Malformed("the signer is not a SHA-256 certificate fingerprint"));
        }
        Ok(Signature { value, signer })
    }
}

/// Why a signature is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the message is not signed")]
    Unsigned,
    #[error("malformed signature: {0}")]
    Malformed(&'static str),
    #[error("signed with a certificate that is not the sender's admitted certificate")]
    UnknownSigner,
    #[error("the signature does not verify over the message's bytes")]
    BadSignature,
}

/// The party's own key and certificate: signs what it sends.
pub struct Signer {
    key: Box<dyn rustls::sign::Signer>,
    fingerprint: String,
    cert_der: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("fingerprint", &self.fingerprint).finish_non_exhaustive()
    }
}

impl Signer {
    /// Reads a certificate and its private key (PKCS #8, SEC1 or PKCS #1 PEM) and checks that
    /// they belong together, so that a wrong key is found at start, not by every recipient.
    ///
    /// # Errors
    /// Unreadable files, a key type the exchange does not sign with, or a key that is not the
    /// certificate's.
    pub fn load(cert: &std::path::Path, key: &std::path::Path) -> Result<Signer, CertError> {
        let cert_pem = std::fs::read(cert).map_err(crate::files::io(cert))?;
        let key_pem = std::fs::read(key).map_err(crate::files::io(key))?;
        Self::from_pem(&cert_pem, &key_pem)
    }

    /// [`Signer::load`] from PEM text.
    ///
    /// # Errors
    /// As [`Signer::load`].
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Signer, CertError> {
        let cert_der = crate::der_of_pem(cert_pem)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| CertError::Pem(format!("private key: {e}")))?;
        let key = rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|e| CertError::Parse(format!("private key: {e}")))?;
        let key = key
            .choose_scheme(&SCHEMES)
            .ok_or_else(|| CertError::Parse("the key is of a type the exchange does not sign with".into()))?;
        let info = CertInfo::parse_der(&cert_der)?;
        let signer = Signer { key, fingerprint: info.fingerprint, cert_der };
        let probe = signer.sign(b"does this key belong to this certificate?");
        Verifier::of_der(&signer.cert_der)?
            .verify(b"does this key belong to this certificate?", &probe.value)
            .map_err(|_| CertError::Parse("the private key does not belong to the certificate".into()))?;
        Ok(signer)
    }

    /// Signs `bytes`.
    ///
    /// # Panics
    /// Only if the crypto library fails to sign with a key it loaded (it does not for the
    /// schemes offered).
    pub fn sign(&self, bytes: &[u8]) -> Signature {
        Signature { value: self.key.sign(bytes).expect("signing with a loaded key"), signer: self.fingerprint.clone() }
    }

    /// The SHA-256 fingerprint of the signer's certificate.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The signer's certificate (DER).
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The signer's certificate as a header carries it: DER, standard base64.
    pub fn cert_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.cert_der)
    }
}

/// A certificate's public key, ready to check signatures made with its private key.
#[derive(Clone)]
pub struct Verifier {
    algorithm: &'static dyn VerificationAlgorithm,
    public_key: Arc<[u8]>,
    /// The fingerprint of the certificate the key is from.
    pub fingerprint: String,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("fingerprint", &self.fingerprint).finish_non_exhaustive()
    }
}

impl Verifier {
    /// The key of a certificate (DER); its algorithm from the key type (the module's table).
    ///
    /// # Errors
    /// Not a certificate, or a key type the exchange does not sign with.
    pub fn of_der(der: &[u8]) -> Result<Verifier, CertError> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| CertError::Parse(e.to_string()))?;
        let spki = cert.public_key();
        let kind = &spki.algorithm.algorithm;
        let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok());
        let algorithm: &'static dyn VerificationAlgorithm = if *kind == OID_KEY_TYPE_EC_PUBLIC_KEY {
            match curve {
                Some(c) if c == OID_EC_P256 => &alg::ECDSA_P256_SHA256_ASN1,
                Some(c) if c == OID_NIST_EC_P384 => &alg::ECDSA_P384_SHA384_ASN1,
                _ => return Err(CertError::Parse("an elliptic curve other than P-256 and P-384".into())),
            }
        } else if *kind == OID_PKCS1_RSAENCRYPTION {
            &alg::RSA_PKCS1_2048_8192_SHA256
        } else if *kind == OID_SIG_ED25519 {
            &alg::ED25519
        } else {
            return Err(CertError::Parse(format!("a key type the exchange does not sign with ({kind})")));
        };
        // The same fingerprint as the certificate's (`CertInfo::fingerprint`).
        let fingerprint = crate::hex(&crate::sha2_digest(der));
        Ok(Verifier { algorithm, public_key: spki.subject_public_key.data.to_vec().into(), fingerprint })
    }

    /// Checks `signature` over `bytes`.
    ///
    /// # Errors
    /// [`Refusal::BadSignature`] when it does not verify.
    pub fn verify(&self, bytes: &[u8], signature: &[u8]) -> Result<(), Refusal> {
        UnparsedPublicKey::new(self.algorithm, &*self.public_key)
            .verify(bytes, signature)
            .map_err(|_| Refusal::BadSignature)
    }

    /// Checks a signature and that it names this certificate.
    ///
    /// # Errors
    /// [`Refusal::UnknownSigner`] when it names another certificate, else as [`Verifier::verify`].
    pub fn check(&self, bytes: &[u8], signature: &Signature) -> Result<(), Refusal> {
        if signature.signer != self.fingerprint {
            return Err(Refusal::UnknownSigner);
        }
        self.verify(bytes, &signature.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Ca, Profile, Role};

    fn issued(role: Role) -> (Signer, Verifier) {
        let ca = Ca::create("Signature test CA", 30).unwrap();
        let made = ca.issue(&Profile::new(role, 30)).unwrap();
        let signer = Signer::from_pem(made.info.pem().as_bytes(), made.key_pem.as_bytes()).unwrap();
        (signer, Verifier::of_der(&made.info.der).unwrap())
    }

    #[test]
    fn a_signature_verifies_over_the_same_bytes_only() {
        let (signer, verifier) = issued(Role::Hub);
        let body = b"<envelope>the exact bytes</envelope>".to_vec();
        let sig = signer.sign(&body);
        assert_eq!(sig.signer, verifier.fingerprint);
        assert_eq!(verifier.check(&body, &sig), Ok(()));
        let mut changed = body.clone();
        changed[3] ^= 1;
        assert_eq!(verifier.check(&changed, &sig), Err(Refusal::BadSignature));
        let mut forged = sig.clone();
        forged.value[10] ^= 1;
        assert_eq!(verifier.check(&body, &forged), Err(Refusal::BadSignature));
    }

    #[test]
    fn another_partys_key_does_not_verify_and_is_named_as_another_signer() {
        let (mine, _) = issued(Role::Province("37".parse().unwrap()));
        let (_, theirs) = issued(Role::Province("37".parse().unwrap()));
        let body = b"same name, other key";
        let sig = mine.sign(body);
        assert_eq!(theirs.check(body, &sig), Err(Refusal::UnknownSigner));
        // Naming the other certificate does not help: the key decides.
        let claimed = Signature { signer: theirs.fingerprint.clone(), ..sig };
        assert_eq!(theirs.check(body, &claimed), Err(Refusal::BadSignature));
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused_at_load() {
        let ca = Ca::create("Signature test CA", 30).unwrap();
        let a = ca.issue(&Profile::new(Role::Hub, 30)).unwrap();
        let b = ca.issue(&Profile::new(Role::Hub, 30)).unwrap();
        let e = Signer::from_pem(a.info.pem().as_bytes(), b.key_pem.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("does not belong"), "{e}");
    }

    #[test]
    fn header_values_are_checked_before_any_crypto() {
        assert!(matches!(Signature::from_headers("%%%", &"a".repeat(64)), Err(Refusal::Malformed(_))));
        assert!(matches!(Signature::from_headers("AAAA", "abc"), Err(Refusal::Malformed(_))));
        assert!(matches!(Signature::from_headers("", &"a".repeat(64)), Err(Refusal::Malformed(_))));
        let ok = Signature::from_headers("AAAA", &"A".repeat(64)).unwrap();
        assert_eq!(ok.signer, "a".repeat(64));
        assert_eq!(ok.value_base64(), "AAAA");
    }

    /// The documented check with standard tools: openssl verifies what the signer made.
    #[test]
    fn openssl_verifies_a_signature_as_documented() {
        if std::process::Command::new("openssl").arg("version").output().is_err() {
            panic!("openssl is needed for this test (Debian: apt-get install openssl)");
        }
        let ca = Ca::create("Signature test CA", 30).unwrap();
        let made = ca.issue(&Profile::new(Role::Province("44".parse().unwrap()), 30)).unwrap();
        let signer = Signer::from_pem(made.info.pem().as_bytes(), made.key_pem.as_bytes()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let body = "<envelope>学籍</envelope>".as_bytes();
        std::fs::write(dir.path().join("body"), body).unwrap();
        std::fs::write(dir.path().join("sig"), signer.sign(body).value).unwrap();
        std::fs::write(dir.path().join("cert.pem"), made.info.pem()).unwrap();
        let check = |body: &[u8]| {
            std::fs::write(dir.path().join("body"), body).unwrap();
            std::process::Command::new("sh")
                .current_dir(dir.path())
                .arg("-c")
                .arg("openssl x509 -in cert.pem -pubkey -noout > pub.pem && openssl dgst -sha256 -verify pub.pem -signature sig body")
                .output()
                .unwrap()
                .status
                .success()
        };
        assert!(check(body), "openssl verifies the signature");
        assert!(!check(b"<envelope>changed</envelope>"), "and refuses it over other bytes");
    }
}
