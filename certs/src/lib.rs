//! The exchange PKI (交换平台证书体系): who may speak on the exchange, and as whom.
//!
//! Every party holds an X.509 certificate from the exchange CA. The subject says who it is
//! and in what role:
//!
//! | role | subject | broker user |
//! |---|---|---|
//! | province | `O=Xueji Exchange, OU=province, CN=prov-NN` (NN: GB/T 2260) | `prov-NN` |
//! | hub | `O=Xueji Exchange, OU=hub, CN=hub` | `hub` |
//! | operator | `O=Xueji Exchange, OU=operator, CN=op-<name>` | none (HTTP API only) |
//! | national office | `O=Xueji Exchange, OU=national-office, CN=moe-<name>` | none (HTTP API only) |
//! | broker (server) | `O=Xueji Exchange, OU=server, CN=<host>`, SAN: host names / IPs | — |
//!
//! Client certificates carry the `clientAuth` extended key usage, server certificates
//! `serverAuth`; every leaf is `CA:FALSE` and valid at most [`MAX_LEAF_DAYS`]. Keys are made
//! where they are used ([`KeyRequest`]: a key and a certificate signing request); the CA signs
//! the request ([`Ca::sign_request`]) and publishes what it revoked ([`crl`]). This crate issues
//! and reads certificates ([`CertInfo::parse_pem`]); trust decisions on the wire are rustls'
//! and the broker's, by signature.

#[cfg(feature = "amqp")]
pub mod amqp;
pub mod crl;
pub mod failpoint;
pub mod files;
#[cfg(feature = "jemalloc")]
pub mod memory;
#[cfg(feature = "amqp")]
pub mod preflight;
mod request;
#[cfg(feature = "serve")]
pub mod serve;
#[cfg(feature = "settings")]
pub mod settings;
#[cfg(feature = "sign")]
pub mod signature;

use std::net::IpAddr;
use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use schemas::Party;
use schemas::ids::ProvinceCode;
use x509_parser::prelude::{FromDer, X509Certificate};

pub use self::request::{KeyRequest, Request};

/// The organization every exchange certificate names.
pub const ORGANIZATION: &str = "Xueji Exchange";

/// Warn this many days before a certificate expires.
pub const EXPIRY_WARNING_DAYS: i64 = 60;

/// The longest validity of any certificate but the CA's (certs/README.md).
pub const MAX_LEAF_DAYS: i64 = 825;

/// The role a certificate gives its holder, carried in the subject's OU.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Role {
    /// A province's adapter (省级学籍系统).
    Province(ProvinceCode),
    /// The hub itself.
    Hub,
    /// An operator of the exchange (运维人员); the name is the part after `op-`.
    Operator(String),
    /// The national office (教育部); the name is the part after `moe-`.
    National(String),
    /// A TLS server (the broker, the hub's HTTPS API).
    Server(String),
}

impl Role {
    /// The OU value of this role.
    pub fn unit(&self) -> &'static str {
        match self {
            Role::Province(_) => "province",
            Role::Hub => "hub",
            Role::Operator(_) => "operator",
            Role::National(_) => "national-office",
            Role::Server(_) => "server",
        }
    }

    /// The common name, which is also the broker user for provinces and the hub.
    pub fn common_name(&self) -> String {
        match self {
            Role::Province(p) => Party::Province(*p).to_string(),
            Role::Hub => "hub".to_owned(),
            Role::Operator(name) => format!("op-{name}"),
            Role::National(name) => format!("moe-{name}"),
            Role::Server(host) => host.clone(),
        }
    }

    /// The exchange party this role speaks for on the broker, if any.
    pub fn party(&self) -> Option<Party> {
        match self {
            Role::Province(p) => Some(Party::Province(*p)),
            Role::Hub => Some(Party::Hub),
            _ => None,
        }
    }

    /// Reads the role back from OU and CN; they must agree.
    ///
    /// # Errors
    /// An unknown OU, or a CN that does not fit it.
    pub fn from_subject(unit: &str, common_name: &str) -> Result<Role, CertError> {
        let bad = || CertError::Subject(format!("OU={unit}, CN={common_name} is not a valid exchange identity"));
        let name_ok = |n: &str| {
            !n.is_empty() && n.len() <= 48 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        match unit {
            "province" => match Party::parse(common_name) {
                Ok(Party::Province(p)) => Ok(Role::Province(p)),
                _ => Err(bad()),
            },
            "hub" if common_name == "hub" => Ok(Role::Hub),
            "operator" => common_name
                .strip_prefix("op-")
                .filter(|n| name_ok(n))
                .map(|n| Role::Operator(n.to_owned()))
                .ok_or_else(bad),
            "national-office" => common_name
                .strip_prefix("moe-")
                .filter(|n| name_ok(n))
                .map(|n| Role::National(n.to_owned()))
                .ok_or_else(bad),
            "server" if !common_name.is_empty() => Ok(Role::Server(common_name.to_owned())),
            _ => Err(bad()),
        }
    }
}

/// Errors of the PKI tooling.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("not a PEM certificate: {0}")]
    Pem(String),
    #[error("cannot parse the certificate: {0}")]
    Parse(String),
    #[error("subject: {0}")]
    Subject(String),
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("the certificate was not issued by this CA")]
    WrongIssuer,
    #[error("{0} exists already; refusing to overwrite it")]
    Exists(String),
    #[error("validity: {0}")]
    Validity(String),
    #[error("certificate request: {0}")]
    Request(String),
}

use files::{io, write_private, write_public};

/// What a certificate says, read with x509-parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    pub role: Role,
    /// Lower-case hexadecimal, without separators.
    pub serial: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// SHA-256 of the DER encoding, lower-case hexadecimal.
    pub fingerprint: String,
    pub der: Vec<u8>,
}

/// Whether a certificate may be used at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    NotYetValid,
    Valid {
        days_left: i64,
    },
    /// Valid, but expiring within [`EXPIRY_WARNING_DAYS`].
    ExpiresSoon {
        days_left: i64,
    },
    Expired,
}

impl CertInfo {
    /// Parses the first certificate of a PEM document.
    ///
    /// # Errors
    /// Not PEM, not a certificate, or a subject that is not an exchange identity.
    pub fn parse_pem(pem: &[u8]) -> Result<CertInfo, CertError> {
        let (_, block) = x509_parser::pem::parse_x509_pem(pem).map_err(|e| CertError::Pem(e.to_string()))?;
        if block.label != "CERTIFICATE" {
            return Err(CertError::Pem(format!("a {} block, not a CERTIFICATE", block.label)));
        }
        Self::parse_der(&block.contents)
    }

    /// # Errors
    /// As [`CertInfo::parse_pem`].
    pub fn parse_der(der: &[u8]) -> Result<CertInfo, CertError> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| CertError::Parse(e.to_string()))?;
        let first = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
            it.next().and_then(|a| a.as_str().ok()).map(str::to_owned)
        };
        let cn =
            first(&mut cert.subject().iter_common_name()).ok_or_else(|| CertError::Subject("no common name".into()))?;
        let ou = first(&mut cert.subject().iter_organizational_unit())
            .ok_or_else(|| CertError::Subject("no organizational unit (role)".into()))?;
        let role = Role::from_subject(&ou, &cn)?;
        let ts = |t: i64| DateTime::from_timestamp(t, 0).unwrap_or_default();
        Ok(CertInfo {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            role,
            serial: cert.raw_serial().iter().map(|b| format!("{b:02x}")).collect(),
            not_before: ts(cert.validity().not_before.timestamp()),
            not_after: ts(cert.validity().not_after.timestamp()),
            fingerprint: hex(&sha2_digest(der)),
            der: der.to_vec(),
        })
    }

    /// Reads a PEM file.
    ///
    /// # Errors
    /// As [`CertInfo::parse_pem`], or the file cannot be read.
    pub fn read(path: &Path) -> Result<CertInfo, CertError> {
        Self::parse_pem(&std::fs::read(path).map_err(io(path))?)
    }

    pub fn validity_at(&self, now: DateTime<Utc>) -> Validity {
        if now < self.not_before {
            return Validity::NotYetValid;
        }
        if now > self.not_after {
            return Validity::Expired;
        }
        let days_left = (self.not_after - now).num_days();
        if days_left < EXPIRY_WARNING_DAYS {
            Validity::ExpiresSoon { days_left }
        } else {
            Validity::Valid { days_left }
        }
    }

    /// The PEM encoding.
    pub fn pem(&self) -> String {
        pem_block("CERTIFICATE", &self.der)
    }
}

fn sha2_digest(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub info: CertInfo,
}

impl Issued {
    /// Writes `<dir>/<stem>.pem` and `<dir>/<stem>.key` (the key readable by the owner only).
    ///
    /// # Errors
    /// When a file exists already ([`CertError::Exists`]: nothing is overwritten) or cannot be
    /// written.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<(), CertError> {
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}.key"));
        for path in [&cert, &key] {
            if path.exists() {
                return Err(CertError::Exists(path.display().to_string()));
            }
        }
        write_private(&key, &self.key_pem)?;
        write_public(&cert, &self.cert_pem)
    }
}

/// What to issue.
#[derive(Debug, Clone)]
pub struct Profile {
    pub role: Role,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// Subject alternative names of a server certificate: DNS names or IP addresses.
    pub alt_names: Vec<String>,
}

impl Profile {
    /// A profile valid from now for `days` days.
    pub fn new(role: Role, days: i64) -> Self {
        let now = Utc::now();
        Profile {
            role,
            not_before: now - Duration::minutes(5),
            not_after: now + Duration::days(days),
            alt_names: vec![],
        }
    }
}

/// The exchange certificate authority: its certificate and signing key.
pub struct Ca {
    cert_pem: String,
    key: KeyPair,
    info_der: Vec<u8>,
}

impl Ca {
    /// Creates a new self-signed CA valid for `days` days.
    ///
    /// # Errors
    /// When key generation or signing fails.
    pub fn create(common_name: &str, days: i64) -> Result<Ca, CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(ORGANIZATION, "certificate-authority", common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let now = Utc::now();
        params.not_before = to_time(now - Duration::minutes(5));
        params.not_after = to_time(now + Duration::days(days));
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key)?;
        Ok(Ca { cert_pem: cert.pem(), info_der: cert.der().to_vec(), key })
    }

    /// Loads `<dir>/ca.pem` and `<dir>/ca.key`.
    ///
    /// # Errors
    /// Missing or unreadable files, or a key that is not the certificate's.
    pub fn load(dir: &Path) -> Result<Ca, CertError> {
        Self::from_files(&dir.join("ca.pem"), &dir.join("ca.key"))
    }

    /// Loads a CA certificate and its key, checking that they belong together.
    ///
    /// # Errors
    /// Missing or unreadable files, or a key that is not the certificate's.
    pub fn from_files(cert_path: &Path, key_path: &Path) -> Result<Ca, CertError> {
        let cert_pem = std::fs::read_to_string(cert_path).map_err(io(cert_path))?;
        let key_pem = std::fs::read_to_string(key_path).map_err(io(key_path))?;
        let key = KeyPair::from_pem(&key_pem)?;
        let (_, block) =
            x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map_err(|e| CertError::Pem(e.to_string()))?;
        let (_, cert) = X509Certificate::from_der(&block.contents).map_err(|e| CertError::Parse(e.to_string()))?;
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(CertError::Subject(format!(
                "{} is not the key of the CA certificate {}",
                key_path.display(),
                cert_path.display()
            )));
        }
        Ok(Ca { cert_pem, key, info_der: block.contents })
    }

    /// Writes `<dir>/ca.pem` and `<dir>/ca.key` (owner-only), refusing to replace either.
    ///
    /// # Errors
    /// [`CertError::Exists`], or when a file cannot be written.
    pub fn write(&self, dir: &Path) -> Result<(), CertError> {
        let cert = dir.join("ca.pem");
        let key = dir.join("ca.key");
        for path in [&cert, &key] {
            if path.exists() {
                return Err(CertError::Exists(path.display().to_string()));
            }
        }
        write_private(&key, &self.key.serialize_pem())?;
        write_public(&cert, &self.cert_pem)
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The DER encoding of the CA certificate.
    pub fn cert_der(&self) -> &[u8] {
        &self.info_der
    }

    pub(crate) fn key(&self) -> &KeyPair {
        &self.key
    }

    /// The parameters of every leaf: the profile's subject and validity (at most
    /// [`MAX_LEAF_DAYS`]), `CA:FALSE`, `digitalSignature`, the role's extended key usage.
    fn leaf_params(profile: &Profile) -> Result<CertificateParams, CertError> {
        if profile.not_after <= profile.not_before {
            return Err(CertError::Validity("it ends before it begins".into()));
        }
        let days = (profile.not_after - profile.not_before).num_days();
        if days > MAX_LEAF_DAYS {
            return Err(CertError::Validity(format!("{days} days; at most {MAX_LEAF_DAYS} (certs/README.md)")));
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = name(ORGANIZATION, profile.role.unit(), &profile.role.common_name());
        params.not_before = to_time(profile.not_before);
        params.not_after = to_time(profile.not_after);
        params.serial_number = Some(random_serial());
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match profile.role {
            Role::Server(_) => vec![ExtendedKeyUsagePurpose::ServerAuth],
            _ => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        params.subject_alt_names = profile.alt_names.iter().map(|a| san(a)).collect::<Result<_, _>>()?;
        Ok(params)
    }

    /// Issues a certificate for `profile` with a fresh key pair made here. For development and
    /// tests: in production the key is made where it is used and [`Ca::sign_request`] signs it.
    ///
    /// # Errors
    /// A validity over [`MAX_LEAF_DAYS`], or a generation or signing failure.
    pub fn issue(&self, profile: &Profile) -> Result<Issued, CertError> {
        let params = Self::leaf_params(profile)?;
        let key = KeyPair::generate()?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &self.key)?;
        let cert = params.signed_by(&key, &issuer)?;
        let info = CertInfo::parse_der(cert.der())?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem(), info })
    }

    /// Signs a certificate signing request: the certificate carries the request's public key,
    /// and the subject and validity of `profile`, whose role must be the one the request names.
    /// Nothing else of the request is taken over (requested extensions are ignored).
    ///
    /// # Errors
    /// A request for another identity than `profile`'s, a validity over [`MAX_LEAF_DAYS`], or
    /// a signing failure.
    pub fn sign_request(&self, request: &Request, profile: &Profile) -> Result<(String, CertInfo), CertError> {
        if request.role != profile.role {
            return Err(CertError::Request(format!(
                "it asks for {} ({}), not {} ({})",
                request.role.common_name(),
                request.role.unit(),
                profile.role.common_name(),
                profile.role.unit()
            )));
        }
        let params = Self::leaf_params(profile)?;
        let public_key = rcgen::SubjectPublicKeyInfo::from_der(&request.spki_der)
            .map_err(|e| CertError::Request(format!("unsupported public key: {e}")))?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &self.key)?;
        let cert = params.signed_by(&public_key, &issuer)?;
        let info = CertInfo::parse_der(cert.der())?;
        Ok((cert.pem(), info))
    }

    /// Checks that `cert` was signed by this CA.
    ///
    /// # Errors
    /// [`CertError::WrongIssuer`] when it was not.
    pub fn verify(&self, cert: &CertInfo) -> Result<(), CertError> {
        verify_der(cert, &self.info_der)
    }
}

/// The DER of the first certificate in a PEM document.
///
/// # Errors
/// Not PEM.
pub fn der_of_pem(pem: &[u8]) -> Result<Vec<u8>, CertError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).map_err(|e| CertError::Pem(e.to_string()))?;
    Ok(block.contents)
}

/// Checks that `cert` was signed by the CA certificate `ca_pem` (one link; trust decisions on
/// the wire are rustls' and the broker's).
///
/// # Errors
/// An unreadable CA certificate, or [`CertError::WrongIssuer`].
pub fn verify_issued_by(cert: &CertInfo, ca_pem: &[u8]) -> Result<(), CertError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(ca_pem).map_err(|e| CertError::Pem(e.to_string()))?;
    verify_der(cert, &block.contents)
}

fn verify_der(cert: &CertInfo, ca_der: &[u8]) -> Result<(), CertError> {
    let (_, ca) = X509Certificate::from_der(ca_der).map_err(|e| CertError::Parse(e.to_string()))?;
    let (_, leaf) = X509Certificate::from_der(&cert.der).map_err(|e| CertError::Parse(e.to_string()))?;
    leaf.verify_signature(Some(ca.public_key())).map_err(|_| CertError::WrongIssuer)
}

fn san(alt: &str) -> Result<SanType, CertError> {
    Ok(match alt.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(alt.to_owned().try_into()?),
    })
}

fn name(org: &str, unit: &str, cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, org);
    dn.push(DnType::OrganizationalUnitName, unit);
    dn.push(DnType::CommonName, cn);
    dn
}

pub(crate) fn to_time(t: DateTime<Utc>) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp()).expect("timestamps of certificates are in range")
}

/// A random positive 128-bit serial (RFC 5280: at most 20 octets, positive).
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    bytes[0] |= 0x40; // no leading zero octet, so the hex form has a fixed length
    SerialNumber::from_slice(&bytes)
}

#[cfg(test)]
mod tests;
