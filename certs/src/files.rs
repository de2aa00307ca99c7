//! Key and certificate files: private keys are created readable by their owner only, nothing
//! is ever overwritten silently, and a key file others can read is reported.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::CertError;

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
    move |source| CertError::Io { path: path.display().to_string(), source }
}

/// Creates `path` with `content` and `mode`; an existing file is an error, never replaced.
fn create_new(path: &Path, content: &[u8], mode: u32) -> Result<(), CertError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let mut f = match std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(CertError::Exists(path.display().to_string()));
        }
        Err(e) => return Err(io(path)(e)),
    };
    f.write_all(content).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// Writes a private key readable by its owner only (0600). Refuses to replace a file.
///
/// # Errors
/// [`CertError::Exists`] when the file is there, or an I/O error.
pub fn write_private(path: &Path, pem: &str) -> Result<(), CertError> {
    create_new(path, pem.as_bytes(), 0o600)
}

/// Writes a public file (certificate, request, CRL). Refuses to replace a file.
///
/// # Errors
/// [`CertError::Exists`] when the file is there, or an I/O error.
pub fn write_public(path: &Path, pem: &str) -> Result<(), CertError> {
    create_new(path, pem.as_bytes(), 0o644)
}

/// Why a key file is exposed, if it is: readable or writable by its group or by others.
/// `None` when only its owner can use it (or it cannot be examined: the reader will say so).
pub fn key_exposure(path: &Path) -> Option<String> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "the private key {} has mode {mode:03o}: others can read it; make it owner-only (chmod 600)",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_key_is_owner_only_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.key");
        write_private(&key, "secret").unwrap();
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(key_exposure(&key).is_none());
        assert!(matches!(write_private(&key, "other"), Err(CertError::Exists(_))));
        assert_eq!(std::fs::read_to_string(&key).unwrap(), "secret");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(key_exposure(&key).unwrap().contains("644"));
    }
}
