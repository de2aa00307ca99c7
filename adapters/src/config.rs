//! Adapter settings: a TOML file, then `ADAPTER_…` environment variables (any key, by one rule:
//! see [`certs::settings`]), validated before any connection is made. Every problem is reported with the key it concerns.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use schemas::ids::ProvinceCode;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The province this adapter serves. Optional: the certificate says it; when given, the two
    /// must agree.
    pub province: Option<String>,
    pub broker: Broker,
    pub storage: Storage,
    #[serde(default)]
    pub api: Api,
    pub webhook: Option<Webhook>,
    #[serde(default)]
    pub limits: Limits,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Broker {
    /// `amqps://host:port`; the mechanism is always EXTERNAL. A cluster's nodes are listed
    /// separated by commas (`amqps://a:5671,amqps://b:5671`): the link takes the first that
    /// answers and moves to another when its node fails.
    pub url: String,
    pub vhost: String,
    /// CA of the broker's server certificate.
    pub ca: PathBuf,
    /// This province's certificate (CN prov-NN) and key.
    pub cert: PathBuf,
    pub key: PathBuf,
    #[serde(default = "default_prefetch")]
    pub prefetch: u16,
}

fn default_prefetch() -> u16 {
    32
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// The SQLite file holding the outbox and the inbox.
    pub path: PathBuf,
    /// Days to keep confirmed and answered messages for status queries.
    #[serde(default = "default_retention")]
    pub retention_days: u32,
}

fn default_retention() -> u32 {
    30
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    /// The local API; localhost by default: the provincial system runs beside the adapter.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Mutual TLS for the local API: required when `listen` is not a loopback address, so that
    /// only the provincial system's own clients (certificates its CA signed) reach the
    /// province's students' data.
    pub tls: Option<ApiTls>,
    /// Connections and deadlines (`[api.limits]`).
    #[serde(default)]
    pub limits: ApiLimits,
    /// A plain-HTTP listener for probes and scraping only (`/healthz`, `/readyz`, `/metrics`:
    /// no student data), for when the API itself needs mutual TLS — e.g. a container's
    /// healthcheck on `127.0.0.1:8438`.
    pub probe_listen: Option<SocketAddr>,
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:8437".parse().expect("literal address")
}

impl Default for Api {
    fn default() -> Self {
        Api { listen: default_listen(), tls: None, limits: ApiLimits::default(), probe_listen: None }
    }
}

/// The local API's own TLS: its server certificate and the CA of its clients' certificates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA whose client certificates may call the API (the provincial system's).
    pub client_ca: PathBuf,
}

/// What clients of the local API may hold (`[api.limits]`; 256 connections by default: one
/// provincial system's clients).
pub type ApiLimits = certs::settings::ServerLimits<256>;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// Inbound messages are POSTed here until it answers 2xx.
    pub url: String,
    /// The key of the HMAC-SHA256 signature every push carries (`x-xueji-signature`), shared
    /// with the provincial system; at least 32 characters. From a file:
    /// `ADAPTER_WEBHOOK__SECRET_FILE`.
    pub secret: crate::webhook::Secret,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default = "default_max_bytes")]
    pub max_message_bytes: usize,
}

fn default_max_bytes() -> usize {
    schemas::DEFAULT_MAX_BYTES
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_message_bytes: default_max_bytes() }
    }
}

impl Settings {
    /// The environment variables the command line reads; not settings.
    pub const RESERVED_ENV: &[&str] = &["ADAPTER_CONFIG", "ADAPTER_LOG_FORMAT"];

    /// Reads `path`, then the `ADAPTER_…` environment by the rule of [`certs::settings`] (every
    /// key: `ADAPTER_` and its path in capitals joined by `__`, e.g. `ADAPTER_PROVINCE`,
    /// `ADAPTER_BROKER__URL`, `ADAPTER_WEBHOOK__SECRET_FILE`), then validates.
    ///
    /// # Errors
    /// An unreadable file, unknown keys, or invalid values.
    pub fn load(path: &Path) -> Result<Settings> {
        let s: Settings = certs::settings::load(path, "ADAPTER", Self::RESERVED_ENV)?;
        s.validate()?;
        Ok(s)
    }

    /// [`Settings::load`] with the environment given.
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn load_with(path: &Path, vars: impl IntoIterator<Item = (String, String)>) -> Result<Settings> {
        let s: Settings = certs::settings::load_with(path, "ADAPTER", Self::RESERVED_ENV, vars)?;
        s.validate()?;
        Ok(s)
    }

    /// The configured province, if any, parsed.
    ///
    /// # Errors
    /// When `province` is not a GB/T 2260 code.
    pub fn claimed_province(&self) -> Result<Option<ProvinceCode>> {
        self.province
            .as_deref()
            .map(|p| ProvinceCode::parse(p).with_context(|| format!("province `{p}` is not a GB/T 2260 province code")))
            .transpose()
    }

    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<()> {
        self.claimed_province()?;
        certs::amqp::validate(&self.broker.url, &self.broker.vhost).context("broker.url")?;
        if let Some(w) = &self.webhook {
            let url = url::Url::parse(&w.url).context("webhook.url is not a URL")?;
            if !matches!(url.scheme(), "http" | "https") {
                bail!("webhook.url must be http:// or https://, not {}", url.scheme());
            }
            if w.secret.len() < crate::webhook::MIN_SECRET {
                bail!("webhook.secret must be at least {} characters", crate::webhook::MIN_SECRET);
            }
        }
        for (key, p) in
            [("broker.ca", &self.broker.ca), ("broker.cert", &self.broker.cert), ("broker.key", &self.broker.key)]
        {
            if !p.is_file() {
                bail!("{key}: {} does not exist", p.display());
            }
        }
        if let Some(parent) = self.storage.path.parent()
            && !parent.as_os_str().is_empty()
            && !parent.is_dir()
        {
            bail!("storage.path: directory {} does not exist", parent.display());
        }
        if let Some(w) = &self.webhook {
            let u = url::Url::parse(&w.url).with_context(|| format!("webhook.url `{}`", w.url))?;
            if !matches!(u.scheme(), "http" | "https") {
                bail!("webhook.url must be http(s)");
            }
        }
        if self.broker.prefetch == 0 {
            bail!("broker.prefetch must be at least 1");
        }
        self.api.limits.to_limits("[api.limits]").map_err(anyhow::Error::msg)?;
        match &self.api.tls {
            None if !self.api.listen.ip().is_loopback() => bail!(
                "api.listen {} is not a loopback address: the local API serves the province's student data, so off \
                 loopback it requires mutual TLS ([api.tls] cert, key, client_ca)",
                self.api.listen
            ),
            None => {}
            Some(tls) => {
                for (key, p) in
                    [("api.tls.cert", &tls.cert), ("api.tls.key", &tls.key), ("api.tls.client_ca", &tls.client_ca)]
                {
                    if !p.is_file() {
                        bail!("{key}: {} does not exist", p.display());
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> String {
        r#"
            [broker]
            url = "amqps://localhost:5681"
            vhost = "xueji"
            ca = "/etc/hosts"
            cert = "/etc/hosts"
            key = "/etc/hosts"
            [storage]
            path = "/tmp/adapter.db"
        "#
        .to_owned()
    }

    #[test]
    fn a_minimal_file_gets_defaults_and_env_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("adapter.toml");
        std::fs::write(&path, minimal()).unwrap();
        let s = Settings::load_with(&path, []).unwrap();
        assert_eq!(s.api.listen.to_string(), "127.0.0.1:8437");
        let vars = [("ADAPTER_PROVINCE", "37"), ("ADAPTER_API__LISTEN", "127.0.0.1:9000"), ("ADAPTER_CONFIG", "x")];
        let s = Settings::load_with(&path, vars.map(|(k, v)| (k.to_owned(), v.to_owned()))).unwrap();
        assert_eq!(s.claimed_province().unwrap().unwrap().code(), "37");
        assert_eq!(s.api.listen.to_string(), "127.0.0.1:9000");
    }

    #[test]
    fn bad_values_are_named() {
        let mut s: Settings = toml::from_str(&minimal()).unwrap();
        s.province = Some("99".into());
        assert!(format!("{:#}", s.validate().unwrap_err()).contains("province `99`"));
        s.province = None;
        s.broker.url = "amqp://guest:guest@localhost".into();
        assert!(format!("{:#}", s.validate().unwrap_err()).contains("broker.url"));
        s.broker.url = "amqps://localhost".into();
        s.storage.path = "/nonexistent/dir/a.db".into();
        assert!(format!("{:#}", s.validate().unwrap_err()).contains("storage.path"));
        assert!(toml::from_str::<Settings>(&format!("{}\nextra = 1", minimal())).is_err());
    }

    #[test]
    fn the_local_api_leaves_loopback_only_with_mutual_tls() {
        let mut s: Settings = toml::from_str(&minimal()).unwrap();
        s.api.listen = "0.0.0.0:8437".parse().unwrap();
        let err = format!("{:#}", s.validate().unwrap_err());
        assert!(err.contains("mutual TLS"), "{err}");
        s.api.tls =
            Some(ApiTls { cert: "/etc/hosts".into(), key: "/etc/hosts".into(), client_ca: "/etc/hosts".into() });
        s.validate().unwrap();
        s.api.listen = "[::1]:8437".parse().unwrap();
        s.api.tls = None;
        s.validate().unwrap();
    }
}
