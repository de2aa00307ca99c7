//! Adapter settings: a TOML file, then `ADAPTER_…` environment variables, validated before any
//! connection is made. Every problem is reported with the key it concerns.

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
    /// `amqps://host:port`; the mechanism is always EXTERNAL.
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
    pub listen: SocketAddr,
}

impl Default for Api {
    fn default() -> Self {
        Api { listen: "127.0.0.1:8437".parse().expect("literal address") }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// Inbound messages are POSTed here until it answers 2xx.
    pub url: String,
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
    /// Reads `path`, applies `ADAPTER_PROVINCE`, `ADAPTER_BROKER_URL`, `ADAPTER_BROKER_VHOST`,
    /// `ADAPTER_STORAGE_PATH`, `ADAPTER_API_LISTEN`, `ADAPTER_WEBHOOK_URL`, then validates.
    ///
    /// # Errors
    /// An unreadable file, unknown keys, or invalid values, each named.
    pub fn load(path: &Path) -> Result<Settings> {
        let text = std::fs::read_to_string(path).with_context(|| format!("Failed to read {}", path.display()))?;
        let mut s: Settings =
            toml::from_str(&text).with_context(|| format!("Invalid settings in {}", path.display()))?;
        s.apply_env(|k| std::env::var(k).ok())?;
        s.validate()?;
        Ok(s)
    }

    fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<()> {
        if let Some(v) = var("ADAPTER_PROVINCE") {
            self.province = Some(v);
        }
        if let Some(v) = var("ADAPTER_BROKER_URL") {
            self.broker.url = v;
        }
        if let Some(v) = var("ADAPTER_BROKER_VHOST") {
            self.broker.vhost = v;
        }
        if let Some(v) = var("ADAPTER_STORAGE_PATH") {
            self.storage.path = v.into();
        }
        if let Some(v) = var("ADAPTER_API_LISTEN") {
            self.api.listen = v.parse().context("ADAPTER_API_LISTEN is not an address like 127.0.0.1:8437")?;
        }
        if let Some(v) = var("ADAPTER_WEBHOOK_URL") {
            self.webhook = Some(Webhook { url: v });
        }
        Ok(())
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
        certs::amqp::uri(&self.broker.url, &self.broker.vhost).context("broker.url")?;
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
        let mut s: Settings = toml::from_str(&minimal()).unwrap();
        s.validate().unwrap();
        assert_eq!(s.api.listen.to_string(), "127.0.0.1:8437");
        s.apply_env(|k| (k == "ADAPTER_PROVINCE").then(|| "37".to_owned())).unwrap();
        assert_eq!(s.claimed_province().unwrap().unwrap().code(), "37");
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
}
