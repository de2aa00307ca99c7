//! Who this adapter is: read from its own certificate at start, never from configuration.
//! An expired or not-yet-valid certificate stops the adapter; one expiring within 60 days is
//! warned about; a configuration that claims another province is refused.

use std::path::Path;

use certs::{CertInfo, Role, Validity};
use chrono::{DateTime, Utc};
use schemas::ids::ProvinceCode;

/// The adapter's identity, from its certificate.
#[derive(Debug, Clone)]
pub struct Identity {
    pub province: ProvinceCode,
    pub cert: CertInfo,
    /// Days until the certificate expires.
    pub days_left: i64,
    /// Whether it expires within [`certs::EXPIRY_WARNING_DAYS`].
    pub expires_soon: bool,
}

/// Why the adapter cannot use its certificate.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read the certificate {path}: {source}")]
    Unreadable { path: String, source: certs::CertError },
    #[error("the certificate is a {0} certificate; an adapter needs a province certificate (OU=province, CN=prov-NN)")]
    NotAProvince(&'static str),
    #[error("the certificate expired on {0}; renew it before starting (证书已过期)")]
    Expired(DateTime<Utc>),
    #[error("the certificate is not valid before {0} (证书尚未生效)")]
    NotYetValid(DateTime<Utc>),
    #[error("the configuration says province {configured}, but the certificate is for province {certified}")]
    ProvinceMismatch { configured: String, certified: String },
}

/// Reads and checks the certificate at `path` as of `now`.
///
/// # Errors
/// See [`IdentityError`].
pub fn check(path: &Path, configured: Option<ProvinceCode>, now: DateTime<Utc>) -> Result<Identity, IdentityError> {
    let cert = CertInfo::read(path)
        .map_err(|source| IdentityError::Unreadable { path: path.display().to_string(), source })?;
    let Role::Province(province) = cert.role else {
        return Err(IdentityError::NotAProvince(cert.role.unit()));
    };
    if let Some(c) = configured
        && c != province
    {
        return Err(IdentityError::ProvinceMismatch { configured: c.code().into(), certified: province.code().into() });
    }
    let (days_left, expires_soon) = match cert.validity_at(now) {
        Validity::Expired => return Err(IdentityError::Expired(cert.not_after)),
        Validity::NotYetValid => return Err(IdentityError::NotYetValid(cert.not_before)),
        Validity::ExpiresSoon { days_left } => (days_left, true),
        Validity::Valid { days_left } => (days_left, false),
    };
    Ok(Identity { province, cert, days_left, expires_soon })
}

#[cfg(test)]
mod tests {
    use certs::{Ca, Profile};
    use chrono::Duration;

    use super::*;

    /// Writes a new certificate into `dir` (each under a name of its own: nothing is overwritten).
    fn write(dir: &Path, profile: &Profile) -> std::path::PathBuf {
        let issued = Ca::create("T", 10).unwrap().issue(profile).unwrap();
        let stem = issued.info.serial.clone();
        issued.write(dir, &stem).unwrap();
        dir.join(format!("{stem}.pem"))
    }

    #[test]
    fn the_province_comes_from_the_certificate_and_claims_must_match() {
        let dir = tempfile::tempdir().unwrap();
        let p37 = ProvinceCode::parse("37").unwrap();
        let path = write(dir.path(), &Profile::new(Role::Province(p37), 365));
        let id = check(&path, None, Utc::now()).unwrap();
        assert_eq!(id.province, p37);
        assert!(!id.expires_soon);
        assert!(check(&path, Some(p37), Utc::now()).is_ok());
        let err = check(&path, Some(ProvinceCode::parse("44").unwrap()), Utc::now()).unwrap_err();
        assert!(matches!(err, IdentityError::ProvinceMismatch { .. }), "{err}");
    }

    #[test]
    fn expired_not_yet_valid_and_soon_expiring_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let role = Role::Province(ProvinceCode::parse("37").unwrap());
        let now = Utc::now();
        let mut profile = Profile::new(role.clone(), 30);
        let soon = check(&write(dir.path(), &profile), None, now).unwrap();
        assert!(soon.expires_soon && soon.days_left <= 30);
        profile.not_before = now - Duration::days(40);
        profile.not_after = now - Duration::days(1);
        assert!(matches!(check(&write(dir.path(), &profile), None, now), Err(IdentityError::Expired(_))));
        profile.not_before = now + Duration::days(2);
        profile.not_after = now + Duration::days(200);
        assert!(matches!(check(&write(dir.path(), &profile), None, now), Err(IdentityError::NotYetValid(_))));
        let hub = write(dir.path(), &Profile::new(Role::Hub, 100));
        assert!(matches!(check(&hub, None, now), Err(IdentityError::NotAProvince("hub"))));
    }
}
