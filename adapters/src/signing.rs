//! Signatures on the link (报文签名): this province signs what it publishes with its
//! certificate's key; what arrives from the hub must carry the hub's signature, made with a
//! hub certificate the exchange CA issued and valid now. The hub's certificate travels with
//! its messages, so a new hub certificate needs no change here; the one checked is kept.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use certs::signature::{Refusal, Signature, Verifier};
use certs::{CertInfo, Role};
use chrono::{DateTime, Utc};
use lapin::types::{AMQPValue, FieldTable};
use schemas::topology::{SIGNATURE_HEADER, SIGNER_CERTIFICATE_HEADER, SIGNER_HEADER};

/// The hub certificates checked so far, by fingerprint, with their expiry.
pub struct HubKeys {
    ca_pem: Vec<u8>,
    checked: Mutex<HashMap<String, (Verifier, DateTime<Utc>)>>,
}

/// Hub certificates kept at most (a hub has one or two at a time).
const KEPT: usize = 16;

impl HubKeys {
    /// Checks hub certificates against the exchange CA in `ca_pem`.
    pub fn new(ca_pem: Vec<u8>) -> HubKeys {
        HubKeys { ca_pem, checked: Mutex::default() }
    }

    /// Whether `body` is signed by the hub, as `headers` say.
    ///
    /// # Errors
    /// Why it is not.
    pub fn check(&self, body: &[u8], headers: Option<&FieldTable>) -> Result<(), String> {
        let text = |name: &str| match headers.and_then(|h| h.inner().get(name)) {
            Some(AMQPValue::LongString(s)) => std::str::from_utf8(s.as_bytes()).ok(),
            Some(AMQPValue::ShortString(s)) => Some(s.as_str()),
            _ => None,
        };
        let (Some(value), Some(signer)) = (text(SIGNATURE_HEADER), text(SIGNER_HEADER)) else {
            return Err(Refusal::Unsigned.to_string());
        };
        let signature = Signature::from_headers(value, signer).map_err(|e| e.to_string())?;
        let now = Utc::now();
        let cached = self.checked.lock().expect("not poisoned").get(&signature.signer).cloned();
        let verifier = match cached {
            Some((verifier, not_after)) if now <= not_after => verifier,
            Some(_) => return Err("signed with a hub certificate that has expired".into()),
            None => {
                let certificate = text(SIGNER_CERTIFICATE_HEADER).ok_or("no hub certificate with the signature")?;
                let (verifier, not_after) = self.admit(certificate, now)?;
                let mut map = self.checked.lock().expect("not poisoned");
                if map.len() >= KEPT {
                    map.clear();
                }
                map.insert(verifier.fingerprint.clone(), (verifier.clone(), not_after));
                verifier
            }
        };
        verifier.check(body, &signature).map_err(|e| e.to_string())
    }

    /// A hub certificate from a header: the exchange CA's, the hub's, valid now.
    fn admit(&self, certificate: &str, now: DateTime<Utc>) -> Result<(Verifier, DateTime<Utc>), String> {
        let der = base64::engine::general_purpose::STANDARD
            .decode(certificate.trim())
            .map_err(|_| "the hub certificate is not base64".to_owned())?;
        let info = CertInfo::parse_der(&der).map_err(|e| format!("the hub certificate: {e}"))?;
        if info.role != Role::Hub {
            return Err(format!("signed with a {} certificate, not the hub's", info.role.common_name()));
        }
        certs::verify_issued_by(&info, &self.ca_pem).map_err(|e| format!("the hub certificate: {e}"))?;
        if now < info.not_before || now > info.not_after {
            return Err("the hub certificate is not valid now".into());
        }
        let verifier = Verifier::of_der(&der).map_err(|e| format!("the hub certificate: {e}"))?;
        Ok((verifier, info.not_after))
    }
}
