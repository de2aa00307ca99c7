//! Settings in layers, by one rule for every key: the TOML file, then the environment.
//!
//! A key is set from the environment by its path in capitals, levels joined by `__`, after the
//! program's prefix: `[database] url` is `HUB_DATABASE__URL`, `[broker.admin] password` is
//! `HUB_BROKER__ADMIN__PASSWORD`, the adapter's top-level `province` is `ADAPTER_PROVINCE`. A
//! variable whose name ends in `_FILE` gives the path of a file holding the value (Docker and
//! Kubernetes secrets): `HUB_DATABASE__PASSWORD_FILE=/run/secrets/pg`. Values are text and
//! are converted to the key's type (`HUB_BROKER__PREFETCH=32`); lists and per-province tables
//! are set in the file. A variable with the prefix that names no key is refused with the keys
//! that exist, like an unknown key in the file; the variables the command line itself reads
//! (`reserved`) are left alone.
//!
//! Here because both programs load their settings this way, and this is the crate both share
//! for their plumbing (certificates, TLS serving, failpoints).

use std::path::Path;

use config::{Config, Environment, File, FileFormat};
use serde::de::DeserializeOwned;

/// Why settings could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("Failed to read {path}")]
    Unreadable { path: String, source: std::io::Error },
    #[error("{var}: failed to read {path}")]
    SecretFile { var: String, path: String, source: std::io::Error },
    #[error("Invalid settings in {path} or the {prefix}_… environment")]
    Invalid { path: String, prefix: String, source: Box<config::ConfigError> },
}

/// Reads `path`, then the process environment under `prefix` (e.g. `HUB`).
///
/// # Errors
/// An unreadable file or secret file, an unknown key (in the file or the environment), or a
/// value of the wrong type, each named.
pub fn load<T: DeserializeOwned>(path: &Path, prefix: &str, reserved: &[&str]) -> Result<T, SettingsError> {
    let vars = std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    load_with(path, prefix, reserved, vars)
}

/// [`load`] with the environment given.
///
/// # Errors
/// As [`load`].
pub fn load_with<T: DeserializeOwned>(
    path: &Path,
    prefix: &str,
    reserved: &[&str],
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<T, SettingsError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| SettingsError::Unreadable { path: path.display().to_string(), source })?;
    let lead = format!("{prefix}_");
    let mut env = config::Map::new();
    for (name, value) in vars {
        if !name.starts_with(&lead) || reserved.contains(&name.as_str()) {
            continue;
        }
        match name.strip_suffix("_FILE") {
            Some(base) => {
                let secret = std::fs::read_to_string(&value).map_err(|source| SettingsError::SecretFile {
                    var: name.clone(),
                    path: value.clone(),
                    source,
                })?;
                // A file written by `echo` ends in a newline that is not part of the secret.
                env.insert(base.to_owned(), secret.trim_end_matches(['\r', '\n']).to_owned());
            }
            None => {
                env.insert(name, value);
            }
        }
    }
    let invalid = |source: config::ConfigError| SettingsError::Invalid {
        path: path.display().to_string(),
        prefix: prefix.to_owned(),
        source: Box::new(source),
    };
    Config::builder()
        .add_source(File::from_str(&text, FileFormat::Toml))
        .add_source(Environment::with_prefix(prefix).prefix_separator("_").separator("__").source(Some(env)))
        .build()
        .map_err(invalid)?
        .try_deserialize()
        .map_err(invalid)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Settings {
        province: Option<String>,
        broker: Broker,
        #[serde(default)]
        provinces: BTreeMap<String, Vec<String>>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Broker {
        url: String,
        prefetch: u16,
        tls: bool,
        admin: Option<Admin>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Admin {
        password: String,
    }

    fn load(file: &str, vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(&path, file).unwrap();
        let vars = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        load_with(&path, "APP", &["APP_CONFIG"], vars)
    }

    /// The error and its causes, as a log line shows them.
    fn chain(e: &dyn std::error::Error) -> String {
        let mut text = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            text.push_str(&format!(": {c}"));
            cause = c.source();
        }
        text
    }

    const FILE: &str = "[broker]\nurl = \"amqps://a\"\nprefetch = 64\ntls = true\n[provinces]\n\"37\" = [\"SCHOOL\"]\n";

    #[test]
    fn every_key_has_its_variable_and_values_take_the_key_s_type() {
        let s = load(FILE, &[]).unwrap();
        assert_eq!((s.broker.prefetch, s.province.as_deref()), (64, None));
        let s = load(
            FILE,
            &[
                ("APP_BROKER__PREFETCH", "8"),
                ("APP_BROKER__TLS", "false"),
                ("APP_PROVINCE", "37"),
                ("APP_BROKER__ADMIN__PASSWORD", "111111"),
                ("APP_CONFIG", "/elsewhere.toml"),
                ("OTHER_BROKER__URL", "ignored"),
            ],
        )
        .unwrap();
        assert_eq!((s.broker.prefetch, s.broker.tls), (8, false));
        assert_eq!(s.province.as_deref(), Some("37"), "digits stay a string where the key is one");
        assert_eq!(s.broker.admin.unwrap().password, "111111");
        assert_eq!(s.broker.url, "amqps://a");
        assert_eq!(s.provinces["37"], ["SCHOOL"]);
    }

    #[test]
    fn a_secret_comes_from_the_file_a_file_variable_names() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("pw");
        std::fs::write(&secret, "s3cret\n").unwrap();
        let s = load(FILE, &[("APP_BROKER__ADMIN__PASSWORD_FILE", secret.to_str().unwrap())]).unwrap();
        assert_eq!(s.broker.admin.unwrap().password, "s3cret", "the final newline is not part of it");
        let err = load(FILE, &[("APP_BROKER__ADMIN__PASSWORD_FILE", "/nonexistent/pw")])
            .map(|_| ())
            .map_err(|e| chain(&e))
            .unwrap_err();
        assert!(err.contains("APP_BROKER__ADMIN__PASSWORD_FILE") && err.contains("/nonexistent/pw"), "{err}");
    }

    #[test]
    fn an_unknown_key_or_variable_is_named() {
        let err = load(&format!("{FILE}\n[brokr]\nurl = \"x\"\n"), &[]).map(|_| ()).map_err(|e| chain(&e)).unwrap_err();
        assert!(err.contains("brokr"), "{err}");
        let err = load(FILE, &[("APP_BROKER__PREFETCHH", "8")]).map(|_| ()).map_err(|e| chain(&e)).unwrap_err();
        assert!(err.contains("prefetchh") && err.contains("prefetch"), "{err}");
        let err = load(FILE, &[("APP_BROKER__PREFETCH", "many")]).map(|_| ()).map_err(|e| chain(&e)).unwrap_err();
        assert!(err.contains("prefetch"), "{err}");
    }
}

/// The connection limits of an HTTP server as both programs configure them (`[ops.limits]`,
/// `[api.limits]`), with `CONNECTIONS` as the default cap on open connections.
#[cfg(feature = "serve")]
#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerLimits<const CONNECTIONS: usize> {
    /// Connections open at once; more are closed as they arrive.
    #[serde(default = "default_connections::<CONNECTIONS>")]
    pub max_connections: usize,
    /// With TLS: from accepting a connection to a completed handshake.
    #[serde(default = "default_deadline")]
    pub handshake_timeout_secs: f64,
    /// For each request's head, and for a new connection's first request to begin.
    #[serde(default = "default_deadline")]
    pub header_timeout_secs: f64,
    /// A connection that moves nothing for this long, with no request in progress, is closed.
    #[serde(default = "default_idle")]
    pub idle_timeout_secs: f64,
}

#[cfg(feature = "serve")]
fn default_connections<const N: usize>() -> usize {
    N
}
#[cfg(feature = "serve")]
fn default_deadline() -> f64 {
    10.0
}
#[cfg(feature = "serve")]
fn default_idle() -> f64 {
    60.0
}

#[cfg(feature = "serve")]
impl<const CONNECTIONS: usize> Default for ServerLimits<CONNECTIONS> {
    fn default() -> Self {
        ServerLimits {
            max_connections: CONNECTIONS,
            handshake_timeout_secs: default_deadline(),
            header_timeout_secs: default_deadline(),
            idle_timeout_secs: default_idle(),
        }
    }
}

#[cfg(feature = "serve")]
impl<const CONNECTIONS: usize> ServerLimits<CONNECTIONS> {
    /// The limits as the server takes them; `what` names the settings' table in the error.
    ///
    /// # Errors
    /// A zero cap or a deadline that is not a positive number of seconds.
    pub fn to_limits(&self, what: &str) -> Result<crate::serve::Limits, String> {
        let deadlines = [self.handshake_timeout_secs, self.header_timeout_secs, self.idle_timeout_secs];
        crate::serve::Limits::from_settings(what, self.max_connections, deadlines)
    }
}
