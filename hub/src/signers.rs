//! Who signed a message (报文签名): the registry's certificates as verifiers, kept in memory
//! once read. A certificate's key never changes, so a cached verifier is never stale; whether
//! the certificate is admitted now (registered, unrevoked, valid) is asked again with every
//! message's claim, in its transaction, so a revocation takes effect at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use certs::signature::{Refusal, Signature, Verifier};
use sqlx::PgConnection;
use tracing::warn;

use crate::store;

/// A registered certificate's key, and whose certificate it is.
#[derive(Debug)]
pub struct Known {
    /// Who the certificate names (`prov-37`).
    pub principal: String,
    pub verifier: Verifier,
}

/// The verifiers read so far, by fingerprint.
#[derive(Debug, Default)]
pub struct Signers {
    known: Mutex<HashMap<String, Arc<Known>>>,
}

/// Verifiers kept at most: far more certificates than the exchange has; beyond it the cache is
/// emptied (and refilled by use).
const KEPT: usize = 4096;

impl Signers {
    /// The registered certificate `fingerprint` names; `None` when none is registered (or its
    /// key is of a type the exchange does not sign with).
    ///
    /// # Errors
    /// Database errors.
    pub async fn find(&self, conn: &mut PgConnection, fingerprint: &str) -> sqlx::Result<Option<Arc<Known>>> {
        if let Some(k) = self.known.lock().expect("not poisoned").get(fingerprint) {
            return Ok(Some(k.clone()));
        }
        let Some((principal, pem)) = store::certs::by_fingerprint(conn, fingerprint).await? else { return Ok(None) };
        let verifier = match certs::der_of_pem(pem.as_bytes()).and_then(|der| Verifier::of_der(&der)) {
            Ok(v) => v,
            Err(e) => {
                warn!(%principal, fingerprint, error = %e, "A registered certificate cannot check signatures.");
                return Ok(None);
            }
        };
        let known = Arc::new(Known { principal, verifier });
        let mut map = self.known.lock().expect("not poisoned");
        if map.len() >= KEPT {
            map.clear();
        }
        map.insert(fingerprint.to_owned(), known.clone());
        Ok(Some(known))
    }
}

/// Why a message's signature does not make it its sender's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotSigned {
    /// Signed, naming a certificate the registry does not hold (`E_REVOKED`: not registered).
    Unregistered(String),
    /// Unsigned, malformed, another party's certificate, or a signature that does not verify
    /// (`E_SIGNATURE`).
    Refused(Refusal),
}

/// Checks a message's signature headers over `body`: made by `sender`'s certificate `known`
/// (found by the fingerprint the headers name). Returns the signature.
///
/// # Errors
/// Why the signature is refused.
pub fn check(
    body: &[u8],
    headers: (Option<&str>, Option<&str>),
    known: Option<&Known>,
    sender: &str,
) -> Result<Signature, NotSigned> {
    let (Some(value), Some(signer)) = headers else { return Err(NotSigned::Refused(Refusal::Unsigned)) };
    let signature = Signature::from_headers(value, signer).map_err(NotSigned::Refused)?;
    let known = known.ok_or_else(|| NotSigned::Unregistered(signature.signer.clone()))?;
    if known.principal != sender {
        return Err(NotSigned::Refused(Refusal::UnknownSigner));
    }
    known.verifier.check(body, &signature).map_err(NotSigned::Refused)?;
    Ok(signature)
}
