//! Certificate requests (证书申请): a key made where it is used and the CSR that carries its
//! public half to the CA; the CA reads a request back before it signs.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, KeyPair};
use x509_parser::prelude::FromDer;

use crate::*;

/// A key made where it will be used, and the certificate signing request (证书申请) that
/// carries its public half to the CA. The key never leaves the directory it is written to.
pub struct KeyRequest {
    pub key_pem: String,
    pub csr_pem: String,
}

impl KeyRequest {
    /// A fresh ECDSA P-256 key and a request for `role`'s subject (and, for a server, its
    /// alternative names).
    ///
    /// # Errors
    /// When generation or signing fails.
    pub fn generate(role: &Role, alt_names: &[String]) -> Result<KeyRequest, CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(ORGANIZATION, role.unit(), &role.common_name());
        params.subject_alt_names = alt_names.iter().map(|a| san(a)).collect::<Result<_, _>>()?;
        let csr = params.serialize_request(&key)?;
        Ok(KeyRequest { key_pem: key.serialize_pem(), csr_pem: csr.pem()? })
    }

    /// Writes `<dir>/<stem>.key` (owner-only) and `<dir>/<stem>.csr`, refusing to replace either.
    ///
    /// # Errors
    /// [`CertError::Exists`], or an I/O error.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf), CertError> {
        let key = dir.join(format!("{stem}.key"));
        let csr = dir.join(format!("{stem}.csr"));
        for path in [&key, &csr] {
            if path.exists() {
                return Err(CertError::Exists(path.display().to_string()));
            }
        }
        write_private(&key, &self.key_pem)?;
        write_public(&csr, &self.csr_pem)?;
        Ok((key, csr))
    }
}

/// What a certificate signing request asks for, read and checked (its self-signature proves
/// the requester holds the key).
#[derive(Debug, Clone)]
pub struct Request {
    pub role: Role,
    /// The alternative names it asks for (servers).
    pub alt_names: Vec<String>,
    pub(crate) spki_der: Vec<u8>,
}

impl Request {
    /// Parses a PEM request and checks its signature and subject.
    ///
    /// # Errors
    /// Not a request, a bad signature, or a subject that is not an exchange identity.
    pub fn parse_pem(pem: &[u8]) -> Result<Request, CertError> {
        use x509_parser::certification_request::X509CertificationRequest;
        let (_, block) = x509_parser::pem::parse_x509_pem(pem).map_err(|e| CertError::Pem(e.to_string()))?;
        if block.label != "CERTIFICATE REQUEST" && block.label != "NEW CERTIFICATE REQUEST" {
            return Err(CertError::Pem(format!("a {} block, not a CERTIFICATE REQUEST", block.label)));
        }
        let (_, csr) = X509CertificationRequest::from_der(&block.contents)
            .map_err(|e| CertError::Request(format!("cannot parse: {e}")))?;
        csr.verify_signature().map_err(|_| CertError::Request("its signature does not verify".into()))?;
        let info = &csr.certification_request_info;
        let first = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
            it.next().and_then(|a| a.as_str().ok()).map(str::to_owned)
        };
        let cn = first(&mut info.subject.iter_common_name())
            .ok_or_else(|| CertError::Subject("the request has no common name".into()))?;
        let ou = first(&mut info.subject.iter_organizational_unit())
            .ok_or_else(|| CertError::Subject("the request has no organizational unit (role)".into()))?;
        let org = first(&mut info.subject.iter_organization());
        if org.as_deref() != Some(ORGANIZATION) {
            return Err(CertError::Subject(format!("O={org:?}, expected O={ORGANIZATION}")));
        }
        let role = Role::from_subject(&ou, &cn)?;
        let mut alt_names = Vec::new();
        if let Some(exts) = csr.requested_extensions() {
            for ext in exts {
                if let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) = ext {
                    for n in &san.general_names {
                        match n {
                            x509_parser::extensions::GeneralName::DNSName(d) => alt_names.push((*d).to_owned()),
                            x509_parser::extensions::GeneralName::IPAddress(ip) => match ip.len() {
                                4 => alt_names
                                    .push(IpAddr::from(<[u8; 4]>::try_from(*ip).expect("four bytes")).to_string()),
                                16 => alt_names
                                    .push(IpAddr::from(<[u8; 16]>::try_from(*ip).expect("sixteen bytes")).to_string()),
                                _ => return Err(CertError::Request("a malformed IP address".into())),
                            },
                            other => return Err(CertError::Request(format!("unsupported alternative name {other}"))),
                        }
                    }
                }
            }
        }
        Ok(Request { role, alt_names, spki_der: info.subject_pki.raw.to_vec() })
    }

    /// Reads a PEM request file.
    ///
    /// # Errors
    /// As [`Request::parse_pem`], or the file cannot be read.
    pub fn read(path: &Path) -> Result<Request, CertError> {
        Self::parse_pem(&std::fs::read(path).map_err(io(path))?)
    }
}
