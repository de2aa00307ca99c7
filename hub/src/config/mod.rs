//! Hub settings: a TOML file, then `HUB_…` environment variables (any key, by one rule: see
//! [`certs::settings`]), validated into typed settings before any connection is made.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use schemas::ids::ProvinceCode;
use serde::Deserialize;

mod business;

pub use self::business::{
    Cases, Lookups, Problems, ProvinceRules, Rules, default_graduation_levels, default_levels,
    default_transfer_statuses,
};

/// A secret setting (a password, a URL with one): read like a string, never printed — its
/// `Debug` and `Display` say `[redacted]`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Everything the hub needs to run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub broker: BrokerSettings,
    #[serde(default)]
    pub http: HttpSettings,
    pub pki: Option<PkiSettings>,
    /// The operators' and national office's API (HTTPS, client certificates).
    pub ops: Option<OpsSettings>,
    #[serde(default)]
    pub limits: Limits,
    /// How long what the hub keeps is kept.
    #[serde(default)]
    pub retention: Retention,
    #[serde(default)]
    pub rules: Rules,
    #[serde(default)]
    pub cases: Cases,
    /// How problem records are handled (evidence limits).
    #[serde(default)]
    pub problems: Problems,
    /// Limits of the national lookup, per province.
    #[serde(default)]
    pub lookups: Lookups,
    /// Per-province rules, keyed by GB/T 2260 code (`[provinces."37"]`).
    #[serde(default)]
    pub provinces: std::collections::BTreeMap<ProvinceCode, ProvinceRules>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://user:password@host:port/database` (a secret: it may hold the password).
    pub url: Secret,
    /// The password, when the URL does not hold it (e.g. from a secret file:
    /// `HUB_DATABASE__PASSWORD_FILE`).
    pub password: Option<Secret>,
    #[serde(default = "default_pool")]
    pub max_connections: u32,
}

impl DatabaseSettings {
    /// Where the database is, for logs: `user@host:port/database`, never the password.
    pub fn target(&self) -> String {
        match url::Url::parse(self.url.expose()) {
            Ok(u) => {
                format!("{}@{}:{}{}", u.username(), u.host_str().unwrap_or("?"), u.port().unwrap_or(5432), u.path())
            }
            Err(_) => "(unparsable URL)".into(),
        }
    }

    /// How to connect: the URL, with the separate password if one is set.
    ///
    /// # Errors
    /// A malformed URL.
    pub fn connect_options(&self) -> Result<sqlx::postgres::PgConnectOptions> {
        let options: sqlx::postgres::PgConnectOptions =
            self.url.expose().parse().context("database.url is not a valid postgres:// URL")?;
        // Every statement planned for its values: a generic plan cached while a table was small
        // (a new hub, the first minute after a start) stays a sequential scan as the table
        // grows — a lock of a few index rows came to cost milliseconds that way. The hub's
        // statements are few per group, so planning each costs little.
        let options = options.options([("plan_cache_mode", "force_custom_plan")]);
        Ok(match &self.password {
            Some(p) => options.password(p.expose()),
            None => options,
        })
    }
}

fn default_pool() -> u32 {
    16
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSettings {
    /// `amqps://host:port`; the mechanism is always EXTERNAL. A cluster's nodes are listed
    /// separated by commas (`amqps://a:5671,amqps://b:5671`): each connection takes the first
    /// that answers, and a connection lost with its node is made again to another.
    pub url: String,
    pub vhost: String,
    /// CA that issued the broker's server certificate.
    pub ca: PathBuf,
    /// The hub's own client certificate (CN=hub) and key.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Unacknowledged deliveries per consumer: what the hub may hold in memory at once (at
    /// most this × `[limits] max_message_bytes`; archive files are the large ones) and what its
    /// groups can fill from. 64 keeps a flood of archive files to a few hundred MiB; a hub
    /// that takes mostly small messages in bulk runs faster with 256 (see the README).
    #[serde(default = "default_prefetch")]
    pub prefetch: u16,
    /// Deliveries of one message before the broker dead-letters it (quorum queues count
    /// redeliveries; the hub never requeues, so only crashes and lost connections count).
    #[serde(default = "default_delivery_limit")]
    pub delivery_limit: u32,
    /// Management API, for provisioning users and revoking access.
    pub admin: Option<BrokerAdmin>,
}

fn default_prefetch() -> u16 {
    256
}

fn default_delivery_limit() -> u32 {
    10
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerAdmin {
    /// `http(s)://host:port` of the management API.
    pub url: String,
    pub user: String,
    /// The password, or a file holding it.
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    /// The broker's `collect_statistics_interval` in milliseconds: how stale its connection
    /// listings can be. Revocation keeps closing connections for three such periods.
    #[serde(default = "default_statistics_interval")]
    pub statistics_interval_ms: u64,
}

fn default_statistics_interval() -> u64 {
    5000
}

impl BrokerAdmin {
    /// # Errors
    /// When neither a password nor a readable password file is configured.
    pub fn password(&self) -> Result<Secret> {
        match (&self.password, &self.password_file) {
            (Some(p), _) => Ok(p.clone()),
            (None, Some(f)) => Ok(Secret::new(
                std::fs::read_to_string(f)
                    .with_context(|| format!("Failed to read the broker admin password from {}", f.display()))?
                    .trim(),
            )),
            (None, None) => bail!("broker.admin needs password or password_file"),
        }
    }
}

/// The operator API: HTTPS, clients authenticated by certificate (role operator or
/// national-office, registered and unrevoked).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsSettings {
    pub listen: SocketAddr,
    /// The hub's server certificate (role server) and key.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA that issues operators' certificates (the exchange CA).
    pub client_ca: PathBuf,
    /// What clients may hold: connections, and the deadlines that free them (`[ops.limits]`).
    #[serde(default)]
    pub limits: ServerLimits,
}

/// Connection limits of the operator API (`[ops.limits]`; 1024 connections by default).
pub type ServerLimits = certs::settings::ServerLimits<1024>;

/// The exchange PKI: which CA admits certificates, and where its revocations are published.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PkiSettings {
    /// The exchange CA certificate: every registered client certificate must be signed by it.
    pub ca: PathBuf,
    /// The CA's private key, for signing the revocation list. Only where revocations are made
    /// (the operator's machine, with `hub certs revoke`); `--ca DIR` gives it too.
    pub ca_key: Option<PathBuf>,
    /// The directory the broker reads the CRL from at every handshake (`crl_cache` of its TLS
    /// options): `hub certs revoke` and `hub certs crl` publish there.
    pub crl_dir: Option<PathBuf>,
}

/// How long the hub keeps what it keeps; a pruning pass runs every `prune_interval_secs`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Outbox rows already published (the copy the relay sent).
    #[serde(default = "default_outbox_retention")]
    pub outbox_published_secs: u64,
    /// Dead letters (their bounded copy, reason and sender).
    #[serde(default = "default_dead_letter_retention")]
    pub dead_letter_secs: u64,
    /// Inbox entries (deduplication and the message trace). Longer than any redelivery.
    #[serde(default = "default_inbox_retention")]
    pub inbox_secs: u64,
    /// The message trace (every message's type, parties, outcome and code; no body): as long as
    /// a case's history is looked into.
    #[serde(default = "default_trace_retention")]
    pub trace_secs: u64,
    /// The evidence files of closed problem groups (their history keeps each file's digest).
    #[serde(default = "default_trace_retention")]
    pub problem_evidence_secs: u64,
    /// The lookup audit (who looked up whom, when, and what was answered).
    #[serde(default = "default_lookup_audit_retention")]
    pub lookup_audit_secs: u64,
    /// The message log's entries (each message's bytes and signature) with their links; the
    /// last link and the last checkpoint before it stay, so the chain goes on verifiably.
    #[serde(default = "default_trace_retention")]
    pub message_log_secs: u64,
    #[serde(default = "default_prune_interval")]
    pub prune_interval_secs: u64,
}

fn default_outbox_retention() -> u64 {
    7 * 86_400
}
fn default_dead_letter_retention() -> u64 {
    30 * 86_400
}
fn default_inbox_retention() -> u64 {
    90 * 86_400
}
fn default_trace_retention() -> u64 {
    400 * 86_400
}
fn default_lookup_audit_retention() -> u64 {
    3 * 365 * 86_400
}
fn default_prune_interval() -> u64 {
    3600
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            outbox_published_secs: default_outbox_retention(),
            dead_letter_secs: default_dead_letter_retention(),
            inbox_secs: default_inbox_retention(),
            trace_secs: default_trace_retention(),
            problem_evidence_secs: default_trace_retention(),
            lookup_audit_secs: default_lookup_audit_retention(),
            message_log_secs: default_trace_retention(),
            prune_interval_secs: default_prune_interval(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Health, readiness and metrics.
    pub listen: SocketAddr,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings { listen: "127.0.0.1:8080".parse().expect("literal address") }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest message accepted, in bytes; larger ones are dead-lettered unread.
    #[serde(default = "default_max_bytes")]
    pub max_message_bytes: usize,
    /// Groups processed at once by one hub process (messages of one case always go to the
    /// same worker). One worker makes the largest groups from a given prefetch; a group
    /// commits in a few milliseconds, so more workers mostly split the groups.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Group commit (组提交): at most this many deliveries one worker commits in one
    /// transaction. Half the prefetch (the default) lets the next group arrive while one is
    /// processed. At most 64: when a group is taken again message by message, each is under a
    /// savepoint, and PostgreSQL keeps 64 subtransactions per transaction in shared memory.
    #[serde(default = "default_group_max")]
    pub group_max: usize,
    /// How long a worker holding one delivery waits for more to join its group, in
    /// milliseconds. 0 (default): it takes what has already arrived, so a lone message is never
    /// held back and under load groups form by themselves while the previous one commits.
    #[serde(default)]
    pub group_linger_ms: u64,
    /// Of a dead letter, this many bytes are kept; beyond it, the SHA-256 and the size.
    #[serde(default = "default_dead_letter_body")]
    pub dead_letter_body_bytes: usize,
    /// Dead letters recorded per sender and minute; more are counted, not kept, so that one
    /// province cannot fill the hub's disk.
    #[serde(default = "default_poison_per_minute")]
    pub poison_per_minute: u32,
    /// Bytes of deliveries the hub holds at once, about: past this its subscription to the
    /// inbox pauses until half of it has been acknowledged. The prefetch counts deliveries
    /// whatever their size; this keeps a flood of archive files (megabytes each) from filling
    /// the hub's memory while small messages still arrive a prefetch at a time.
    #[serde(default = "default_held_bytes")]
    pub held_bytes: usize,
}

fn default_held_bytes() -> usize {
    32 * 1024 * 1024
}

fn default_dead_letter_body() -> usize {
    64 * 1024
}

fn default_poison_per_minute() -> u32 {
    60
}

fn default_max_bytes() -> usize {
    schemas::DEFAULT_MAX_BYTES
}

fn default_workers() -> usize {
    2
}

fn default_group_max() -> usize {
    64
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: default_max_bytes(),
            workers: default_workers(),
            group_max: default_group_max(),
            group_linger_ms: 0,
            held_bytes: default_held_bytes(),
            dead_letter_body_bytes: default_dead_letter_body(),
            poison_per_minute: default_poison_per_minute(),
        }
    }
}

impl Settings {
    /// The environment variables the command line reads; not settings.
    pub const RESERVED_ENV: &[&str] =
        &["HUB_CONFIG", "HUB_LOG_FORMAT", "HUB_OPS_URL", "HUB_OPS_CERT", "HUB_OPS_KEY", "HUB_OPS_CA"];

    /// Reads `path`, then the `HUB_…` environment by the rule of [`certs::settings`] (every key:
    /// `HUB_` and its path in capitals joined by `__`; `…_FILE` reads a secret file), then
    /// validates.
    ///
    /// # Errors
    /// An unreadable file, unknown keys, or invalid values.
    pub fn load(path: &Path) -> Result<Settings> {
        let s: Settings = certs::settings::load(path, "HUB", Self::RESERVED_ENV)?;
        s.validate()?;
        Ok(s)
    }

    /// [`Settings::load`] with the environment given.
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn load_with(path: &Path, vars: impl IntoIterator<Item = (String, String)>) -> Result<Settings> {
        let s: Settings = certs::settings::load_with(path, "HUB", Self::RESERVED_ENV, vars)?;
        s.validate()?;
        Ok(s)
    }

    /// Checks what can be checked without connecting.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<()> {
        certs::amqp::validate(&self.broker.url, &self.broker.vhost).context("broker.url")?;
        let url = self.database.url.expose();
        if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            bail!("database.url must be a postgres:// URL");
        }
        if self.broker.prefetch == 0 || self.limits.workers == 0 {
            bail!("broker.prefetch and limits.workers must be at least 1");
        }
        if !(1..=64).contains(&self.limits.group_max) || self.limits.group_linger_ms > 1000 {
            bail!("limits.group_max must be 1 to 64 and limits.group_linger_ms at most 1000");
        }
        if self.limits.held_bytes < 1024 * 1024 {
            bail!("limits.held_bytes must be at least 1 MiB (1048576)");
        }
        if self.lookups.per_minute == 0 || self.lookups.same_student_per_hour == 0 {
            bail!("lookups.per_minute and lookups.same_student_per_hour must be at least 1");
        }
        if self.broker.delivery_limit == 0 {
            bail!("broker.delivery_limit must be at least 1");
        }
        for p in [&self.broker.ca, &self.broker.cert, &self.broker.key] {
            if !p.exists() {
                bail!("{} does not exist", p.display());
            }
        }
        if let Some(ops) = &self.ops {
            for p in [&ops.cert, &ops.key, &ops.client_ca] {
                if !p.exists() {
                    bail!("ops: {} does not exist", p.display());
                }
            }
            ops.limits.to_limits("[ops]").map_err(anyhow::Error::msg)?;
        }
        if self.retention.prune_interval_secs == 0 {
            bail!("retention.prune_interval_secs must be at least 1");
        }
        // A message's bytes are kept in the message log only: a replay sends again what was
        // published within the outbox's retention, so the log must keep at least as long.
        if self.retention.message_log_secs < self.retention.outbox_published_secs {
            bail!(
                "retention.message_log_secs ({}) must be at least retention.outbox_published_secs ({}): the outbox's \
                 messages are sent from the message log",
                self.retention.message_log_secs,
                self.retention.outbox_published_secs
            );
        }
        business::check(&self.rules, &self.cases, &self.provinces)?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const MINIMAL: &str = r#"
        [database]
        url = "postgres://xueji@127.0.0.1/hub"
        [broker]
        url = "amqps://localhost:5681"
        vhost = "xueji"
        ca = "/etc/hosts"
        cert = "/etc/hosts"
        key = "/etc/hosts"
    "#;

    #[test]
    fn defaults_fill_what_the_file_leaves_out() {
        let s: Settings = toml::from_str(MINIMAL).unwrap();
        s.validate().unwrap();
        assert_eq!(s.broker.delivery_limit, 10);
        assert_eq!(s.rules.transfer_statuses.len(), 6);
    }

    #[test]
    fn review_chains_are_checked_at_start() {
        let with = |chains: &str| {
            let s: Settings = toml::from_str(&format!("{MINIMAL}\n[provinces.\"37\"]\n{chains}")).unwrap();
            s.validate()
        };
        with("transfer_in = [\"SCHOOL\", \"BUREAU\", \"CITY\"]\nenrollment_out = [\"CITY\"]").unwrap();
        let err = with("enrollment_in = []").unwrap_err().to_string();
        assert!(err.contains("enrollment_in") && err.contains("at least one level"), "{err}");
        let err = with("transfer_out = [\"SCHOOL\", \"SCHOOL\"]").unwrap_err().to_string();
        assert!(err.contains("transfer_out") && err.contains("twice"), "{err}");
        with("transfer_statuses = [\"ENROLLED\", \"WITHDRAWN\"]").unwrap();
        let err = with("transfer_statuses = [\"ENROLLED\", \"SUSPENDED\"]").unwrap_err().to_string();
        assert!(err.contains("Suspended") && err.contains("G-1"), "{err}");
    }

    #[test]
    fn the_message_log_keeps_at_least_as_long_as_the_outbox() {
        let with = |r: &str| toml::from_str::<Settings>(&format!("{MINIMAL}\n[retention]\n{r}")).unwrap().validate();
        with("message_log_secs = 604800").unwrap();
        let err = with("message_log_secs = 604799").unwrap_err().to_string();
        assert!(err.contains("message_log_secs") && err.contains("outbox_published_secs"), "{err}");
        with("message_log_secs = 60\noutbox_published_secs = 60").unwrap();
    }

    #[test]
    fn secrets_are_never_printed() {
        let mut s: Settings = toml::from_str(MINIMAL).unwrap();
        s.database.url = Secret::new("postgres://xueji:hunter2@db/hub");
        let printed = format!("{s:?}");
        assert!(!printed.contains("hunter2") && printed.contains("[redacted]"), "{printed}");
        assert_eq!(s.database.url.expose(), "postgres://xueji:hunter2@db/hub");
    }

    #[test]
    fn keys_and_lists_are_parsed_into_their_types_at_load() {
        let bad_province = toml::from_str::<Settings>(&format!("{MINIMAL}\n[provinces.\"99\"]\n"));
        assert!(bad_province.is_err(), "not a province code");
        let bad_type = toml::from_str::<Settings>(&format!("{MINIMAL}\n[cases]\nattachment_types = [\"pdf\"]\n"));
        assert!(bad_type.is_err(), "not a media type");
    }

    #[test]
    fn environment_overrides_the_file_by_one_rule_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.toml");
        std::fs::write(&path, format!("{MINIMAL}\n[provinces.\"37\"]\n")).unwrap();
        let vars = |v: &[(&str, &str)]| v.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<Vec<_>>();
        let s = Settings::load_with(
            &path,
            vars(&[
                ("HUB_BROKER__VHOST", "other"),
                ("HUB_DATABASE__PASSWORD", "123456"),
                ("HUB_LIMITS__WORKERS", "4"),
                ("HUB_CONFIG", "/not/a/setting.toml"),
            ]),
        )
        .unwrap();
        assert_eq!((s.broker.vhost.as_str(), s.limits.workers), ("other", 4));
        assert_eq!(s.database.password.as_ref().map(Secret::expose), Some("123456"));
        assert!(s.provinces.contains_key(&ProvinceCode::parse("37").unwrap()));
        assert!(format!("{s:?}").contains("[redacted]") && !format!("{s:?}").contains("123456"));
        let err = Settings::load_with(&path, vars(&[("HUB_DATABASE_URL", "postgres://x")])).unwrap_err();
        assert!(format!("{err:#}").contains("database_url"), "a single underscore names no key: {err:#}");
        let err = Settings::load_with(&path, vars(&[("HUB_BROKER__URL", "amqp://guest:guest@localhost")])).unwrap_err();
        assert!(format!("{err:#}").contains("broker.url"), "{err:#}");
        assert!(toml::from_str::<Settings>(&format!("{MINIMAL}\nunknown = 1")).is_err());
    }

    /// The example in hub/deploy names every key with valid values: it loads (its files put
    /// where they exist).
    #[test]
    fn the_example_settings_load() {
        let text = include_str!("../../deploy/hub.example.toml");
        let dir = tempfile::tempdir().unwrap();
        let mut text = text.to_owned();
        for file in ["ca.pem", "hub.pem", "hub.key", "ops-server.pem", "ops-server.key"] {
            let path = dir.path().join(file);
            std::fs::write(&path, "").unwrap();
            text = text.replace(&format!("/etc/xueji/{file}"), &path.display().to_string());
        }
        let path = dir.path().join("hub.toml");
        std::fs::write(&path, text).unwrap();
        let s = Settings::load_with(&path, []).unwrap();
        assert_eq!(s.retention.trace_secs, default_trace_retention());
        assert!(s.ops.is_some() && s.broker.admin.is_some() && s.pki.is_some());
        assert_eq!(s.provinces.len(), 1);
    }
}
