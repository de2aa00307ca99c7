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
//! `serverAuth`. This crate issues them ([`Ca`]) and reads them ([`CertInfo::parse`]); trust
//! decisions on the wire are rustls' and the broker's.

#[cfg(feature = "amqp")]
pub mod amqp;

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

/// The organization every exchange certificate names.
pub const ORGANIZATION: &str = "Xueji Exchange";

/// Warn this many days before a certificate expires.
pub const EXPIRY_WARNING_DAYS: i64 = 60;

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
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
    move |source| CertError::Io { path: path.display().to_string(), source }
}

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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn pem_block(label: &str, der: &[u8]) -> String {
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
    /// When a file cannot be written.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<(), CertError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}.key"));
        std::fs::write(&cert, &self.cert_pem).map_err(io(&cert))?;
        write_private(&key, &self.key_pem)
    }
}

fn write_private(path: &Path, content: &str) -> Result<(), CertError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io(path))?;
    f.write_all(content.as_bytes()).map_err(io(path))
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
    /// Missing or unreadable files.
    pub fn load(dir: &Path) -> Result<Ca, CertError> {
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca.key");
        let cert_pem = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
        let key_pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
        let key = KeyPair::from_pem(&key_pem)?;
        let (_, block) =
            x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map_err(|e| CertError::Pem(e.to_string()))?;
        Ok(Ca { cert_pem, key, info_der: block.contents })
    }

    /// Writes `<dir>/ca.pem` and `<dir>/ca.key` (owner-only).
    ///
    /// # Errors
    /// When a file cannot be written.
    pub fn write(&self, dir: &Path) -> Result<(), CertError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let cert = dir.join("ca.pem");
        std::fs::write(&cert, &self.cert_pem).map_err(io(&cert))?;
        write_private(&dir.join("ca.key"), &self.key.serialize_pem())
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a certificate for `profile` with a fresh key pair.
    ///
    /// # Errors
    /// When generation or signing fails.
    pub fn issue(&self, profile: &Profile) -> Result<Issued, CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(ORGANIZATION, profile.role.unit(), &profile.role.common_name());
        params.not_before = to_time(profile.not_before);
        params.not_after = to_time(profile.not_after);
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match profile.role {
            Role::Server(_) => vec![ExtendedKeyUsagePurpose::ServerAuth],
            _ => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        for alt in &profile.alt_names {
            params.subject_alt_names.push(match alt.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(alt.clone().try_into()?),
            });
        }
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &self.key)?;
        let cert = params.signed_by(&key, &issuer)?;
        let info = CertInfo::parse_der(cert.der())?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem(), info })
    }

    /// Checks that `cert` was signed by this CA.
    ///
    /// # Errors
    /// [`CertError::WrongIssuer`] when it was not.
    pub fn verify(&self, cert: &CertInfo) -> Result<(), CertError> {
        verify_der(cert, &self.info_der)
    }
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

fn name(org: &str, unit: &str, cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, org);
    dn.push(DnType::OrganizationalUnitName, unit);
    dn.push(DnType::CommonName, cn);
    dn
}

fn to_time(t: DateTime<Utc>) -> time::OffsetDateTime {
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
mod tests {
    use super::*;

    fn ca() -> Ca {
        Ca::create("Test CA", 30).unwrap()
    }

    #[test]
    fn an_issued_province_certificate_reads_back_with_its_role() {
        let ca = ca();
        let p = ProvinceCode::parse("37").unwrap();
        let issued = ca.issue(&Profile::new(Role::Province(p), 365)).unwrap();
        let info = CertInfo::parse_pem(issued.cert_pem.as_bytes()).unwrap();
        assert_eq!(info.role, Role::Province(p));
        assert_eq!(info.role.party(), Some(Party::Province(p)));
        assert!(info.subject.contains("CN=prov-37"), "{}", info.subject);
        assert_eq!(info.serial.len(), 32);
        assert!(matches!(info.validity_at(Utc::now()), Validity::Valid { days_left: 364 | 365 }));
        ca.verify(&info).unwrap();
    }

    #[test]
    fn a_certificate_of_another_ca_does_not_verify() {
        let other = ca().issue(&Profile::new(Role::Hub, 10)).unwrap();
        assert!(matches!(ca().verify(&other.info), Err(CertError::WrongIssuer)));
    }

    #[test]
    fn validity_tells_expired_not_yet_valid_and_expiring_soon() {
        let ca = ca();
        let now = Utc::now();
        let mut profile = Profile::new(Role::Hub, 30);
        assert!(matches!(ca.issue(&profile).unwrap().info.validity_at(now), Validity::ExpiresSoon { .. }));
        profile.not_before = now - Duration::days(20);
        profile.not_after = now - Duration::days(1);
        assert_eq!(ca.issue(&profile).unwrap().info.validity_at(now), Validity::Expired);
        profile.not_before = now + Duration::days(1);
        profile.not_after = now + Duration::days(100);
        assert_eq!(ca.issue(&profile).unwrap().info.validity_at(now), Validity::NotYetValid);
    }

    #[test]
    fn roles_and_common_names_must_agree() {
        assert!(Role::from_subject("province", "prov-99").is_err());
        assert!(Role::from_subject("province", "hub").is_err());
        assert!(Role::from_subject("hub", "prov-37").is_err());
        assert!(Role::from_subject("operator", "op-").is_err());
        assert!(Role::from_subject("admin", "op-x").is_err());
        assert_eq!(Role::from_subject("operator", "op-zhang").unwrap(), Role::Operator("zhang".into()));
        assert_eq!(Role::from_subject("national-office", "moe-arbiter").unwrap(), Role::National("arbiter".into()));
    }

    #[test]
    fn keys_round_trip_through_files() {
        let dir = std::env::temp_dir().join(format!("certs-test-{}", std::process::id()));
        let ca = ca();
        ca.write(&dir).unwrap();
        let loaded = Ca::load(&dir).unwrap();
        let issued = loaded.issue(&Profile::new(Role::Server("localhost".into()), 5)).unwrap();
        ca.verify(&issued.info).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(dir.join("ca.key")).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
