//! Evidence bundles as an auditor receives them: a tar unpacked with `tar`, checked with its
//! own `verify.sh`, and read entry by entry.

use std::path::{Path, PathBuf};
use std::process::Command;

/// An unpacked bundle.
pub struct Unpacked {
    _dir: tempfile::TempDir,
    /// The bundle's own directory (the tar's one top-level directory).
    pub root: PathBuf,
}

/// One entry of a bundle: its meta's fields, and whether its bytes are in the bundle.
#[derive(Debug, Clone)]
pub struct Listed {
    pub meta: String,
    pub with_body: bool,
}

impl Listed {
    /// A field of the meta (`message-type`, `group-id`, …).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.meta.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
    }
}

impl Unpacked {
    /// Unpacks `tar` (bytes of a tar archive with one top-level directory) with the system's
    /// `tar`, as an auditor would.
    pub fn tar(tar: &[u8]) -> Unpacked {
        let dir = tempfile::tempdir().expect("a directory");
        std::fs::write(dir.path().join("bundle.tar"), tar).expect("written");
        let out = Command::new("tar").arg("-xf").arg("bundle.tar").current_dir(dir.path()).output().expect("tar");
        assert!(out.status.success(), "tar: {}", String::from_utf8_lossy(&out.stderr));
        std::fs::remove_file(dir.path().join("bundle.tar")).expect("removed");
        let mut tops: Vec<PathBuf> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(tops.len(), 1, "one top-level directory: {tops:?}");
        Unpacked { root: tops.remove(0), _dir: dir }
    }

    /// Runs `sh verify.sh`: whether it passed, and what it said.
    pub fn verify(&self) -> (bool, String) {
        verify(&self.root)
    }

    /// The entries, in position order.
    pub fn entries(&self) -> Vec<Listed> {
        entries(&self.root)
    }
}

/// Runs `sh <dir>/verify.sh`: whether it passed, and what it said.
pub fn verify(dir: &Path) -> (bool, String) {
    let out = Command::new("sh").arg(dir.join("verify.sh")).output().expect("sh");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// The entries of the bundle in `dir`, in position order.
pub fn entries(dir: &Path) -> Vec<Listed> {
    let mut metas: Vec<PathBuf> = std::fs::read_dir(dir.join("entries"))
        .expect("entries/")
        .map(|f| f.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "meta"))
        .collect();
    metas.sort();
    metas
        .iter()
        .map(|m| Listed { meta: std::fs::read_to_string(m).unwrap(), with_body: m.with_extension("body").exists() })
        .collect()
}
