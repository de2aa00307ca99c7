//! End-to-end harness. Each test gets its own world on the real services that
//! `tests/services.sh` provisions: a fresh PostgreSQL database, a fresh broker vhost with the
//! hub's topology, certificates issued by the development CA, and the hub and adapters as real
//! processes. Nothing here mocks the broker or the database.

mod adapter;
mod broker;
pub mod browser;
pub mod evidence;
pub mod inprocess;
pub mod measure;
mod operator;
mod testbed;
pub mod world;

pub use measure::rss_mib;

pub use self::adapter::*;
pub use self::broker::*;
pub use self::operator::*;
pub use self::testbed::*;

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use lapin::Connection;
use schemas::ids::ProvinceCode;

/// Where the development services are, as written by `tests/services.sh` to `dev.env`.
#[derive(Debug, Clone)]
pub struct DevEnv {
    pub ca_cert: PathBuf,
    pub pki_dir: PathBuf,
    /// Where the broker reads the CA's revocation list.
    pub crl_dir: PathBuf,
    pub hub_cert: PathBuf,
    pub hub_key: PathBuf,
    pub amqps_url: String,
    pub mgmt_url: String,
    pub mgmt_user: String,
    pub mgmt_password: String,
    pub pg_url: String,
    /// The Python tools' directory (schemathesis, openapi-spec-validator).
    pub py_bin: PathBuf,
}

impl DevEnv {
    /// Reads `$XJ_DEV_DIR/dev.env` (default `/var/lib/xueji-dev/dev.env`).
    ///
    /// # Errors
    /// When the file is missing (run `bash tests/services.sh` first) or incomplete.
    pub fn load() -> Result<Self> {
        let dir = std::env::var("XJ_DEV_DIR").unwrap_or_else(|_| "/var/lib/xueji-dev".into());
        let path = Path::new(&dir).join("dev.env");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("Failed to read {}: provision the services with `bash tests/services.sh`", path.display())
        })?;
        let vars: HashMap<&str, &str> =
            text.lines().filter(|l| !l.trim_start().starts_with('#')).filter_map(|l| l.split_once('=')).collect();
        let get = |k: &str| -> Result<String> {
            match vars.get(k) {
                Some(v) if !v.is_empty() => Ok((*v).to_owned()),
                _ => bail!("{} has no {k}; re-run `bash tests/services.sh`", path.display()),
            }
        };
        Ok(DevEnv {
            ca_cert: get("XJ_CA_CERT")?.into(),
            pki_dir: get("XJ_PKI_DIR")?.into(),
            crl_dir: get("XJ_CRL_DIR")?.into(),
            hub_cert: get("XJ_HUB_CERT")?.into(),
            hub_key: get("XJ_HUB_KEY")?.into(),
            amqps_url: get("XJ_AMQPS_URL")?,
            mgmt_url: get("XJ_MGMT_URL")?,
            mgmt_user: get("XJ_MGMT_USER")?,
            mgmt_password: get("XJ_MGMT_PASSWORD")?,
            pg_url: get("XJ_PG_URL")?,
            py_bin: get("XJ_PY_BIN")?.into(),
        })
    }

    /// Connects to `vhost` as the holder of `cert`/`key`, the way hub and adapters do.
    ///
    /// # Errors
    /// When TLS or the login is refused.
    pub async fn connect(&self, vhost: &str, cert: &Path, key: &Path) -> Result<Connection> {
        Ok(certs::amqp::connect(&certs::amqp::Identity {
            url: &self.amqps_url,
            vhost,
            ca: &self.ca_cert,
            cert,
            key,
            connection_name: "e2e",
        })
        .await?)
    }
}

/// A certificate and key on disk.
#[derive(Debug, Clone)]
pub struct Creds {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub serial: String,
}

impl Creds {
    /// The key that signs what this party sends.
    ///
    /// # Panics
    /// When the files are not a certificate and its key.
    pub fn signer(&self) -> certs::signature::Signer {
        certs::signature::Signer::load(&self.cert, &self.key).expect("a certificate and its key")
    }
}

/// The headers of `body` signed by `signer` with its certificate beside, as the hub publishes
/// it.
pub fn signed_with_certificate(signer: &certs::signature::Signer, body: &[u8]) -> lapin::types::FieldTable {
    use lapin::types::{AMQPValue, LongString};
    let mut headers = signed(signer, body);
    headers.insert(
        schemas::topology::SIGNER_CERTIFICATE_HEADER.into(),
        AMQPValue::LongString(LongString::from(signer.cert_base64())),
    );
    headers
}

/// The headers of `body` signed by `signer`, as an adapter publishes it.
pub fn signed(signer: &certs::signature::Signer, body: &[u8]) -> lapin::types::FieldTable {
    use lapin::types::{AMQPValue, FieldTable, LongString};
    let signature = signer.sign(body);
    let mut headers = FieldTable::default();
    headers.insert(
        schemas::topology::SIGNATURE_HEADER.into(),
        AMQPValue::LongString(LongString::from(signature.value_base64())),
    );
    headers.insert(schemas::topology::SIGNER_HEADER.into(), AMQPValue::LongString(LongString::from(signature.signer)));
    headers
}

/// The directory of the workspace's built binaries (`target/debug` or `target/release`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("executable path");
    let dir = exe.parent().expect("a directory").to_path_buf();
    // Tests run from target/<profile>/deps; binaries such as the demo from target/<profile>.
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().expect("target/<profile>").to_path_buf()
    } else {
        dir
    }
}

/// The path of a workspace binary; tests/run.sh builds them before the tests.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(path.exists(), "{} is missing: run `cargo build --workspace --bins` (tests/run.sh does)", path.display());
    path
}

/// Polls `check` every 100 ms until it returns `Some`, or fails after `timeout`.
///
/// # Panics
/// When the deadline passes; the message says what was awaited.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A free TCP port on 127.0.0.1 for a process a test starts (checked by binding and releasing it).
///
/// Chosen at random below the kernel's ephemeral range (32768–60999): a port the kernel hands out
/// for "any port" may be handed out again to another test, or used by an outgoing connection, in
/// the second before the started process binds it.
pub fn free_port() -> u16 {
    // A port is free when chosen but bound only later, by a process the test starts: never hand
    // the same one out twice (a hub once got one port for its health and its operator API).
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        // The random bits of a v4 UUID: no extra dependency for one random number.
        let n = u16::from_le_bytes(uuid::Uuid::new_v4().as_bytes()[..2].try_into().expect("two bytes"));
        let port = 20_000 + n % 12_000;
        let mut given = GIVEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).to_vec()
}

/// A string header of a message, if present.
pub fn header(props: &lapin::BasicProperties, name: &str) -> Option<String> {
    match props.headers().as_ref()?.inner().get(name)? {
        lapin::types::AMQPValue::LongString(s) => Some(s.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// The `n`th invented student of a province, with a valid national student ID (G + resident
/// ID built from `n`), for load and fault tests.
pub fn student(province: &str, n: u32) -> schemas::messages::StudentSummary {
    use schemas::ids::{IdDocument, ResidentId};
    let birth =
        chrono::NaiveDate::from_ymd_opt(2010, 1, 1).expect("date") + chrono::Duration::days(i64::from(n / 1000));
    let resident =
        ResidentId::from_body(&format!("{province}0104{}{:03}", birth.format("%Y%m%d"), n % 1000)).expect("valid body");
    schemas::messages::StudentSummary {
        student_id: format!("G{resident}").parse().expect("valid national student ID"),
        name: format!("学生{n}").parse().expect("valid name"),
        sex: resident.sex(),
        birth_date: birth,
        id_document: IdDocument::Resident(resident),
        school: format!("31{province}{:06}", n % 7).parse().expect("school code"),
        grade: "14".parse().expect("grade"),
        status: schemas::messages::StudentStatus::Enrolled,
        problem_record: false,
        open_business: false,
        changed_at: chrono::DateTime::from_timestamp(1_780_000_000 + i64::from(n), 0).expect("time"),
        problem_kind: None,
        registered_at: Some(chrono::DateTime::from_timestamp(1_700_000_000 + i64::from(n), 0).expect("time")),
        key_data_changed_at: None,
    }
}

/// An `index.upsert` from `province` carrying the given students.
pub fn index_upsert(province: &str, students: Vec<schemas::messages::StudentSummary>) -> schemas::Envelope {
    use schemas::messages::{Batch, Body, IndexUpsert};
    let from = schemas::Party::Province(ProvinceCode::parse(province).expect("province"));
    schemas::Envelope::new(
        from,
        schemas::Party::Hub,
        Body::IndexUpsert(IndexUpsert { student: Batch::new(students).expect("1..=1000 students") }),
    )
}

/// The next delivery of `consumer`; fails after two minutes without one.
pub async fn next_delivery(consumer: &mut lapin::Consumer) -> lapin::message::Delivery {
    use futures_util::StreamExt;
    tokio::time::timeout(Duration::from_secs(120), consumer.next())
        .await
        .expect("in time")
        .expect("open")
        .expect("delivery")
}

/// Takes `n` deliveries from `consumer` and acknowledges each.
pub async fn ack_n(consumer: &mut lapin::Consumer, n: usize) {
    for _ in 0..n {
        let d = next_delivery(consumer).await;
        d.ack(lapin::options::BasicAckOptions::default()).await.expect("ack");
    }
}

/// Scrapes a counter (summed over its labels) from a hub's `/metrics`.
pub async fn metric(listen: std::net::SocketAddr, name: &str) -> f64 {
    let r = reqwest::get(format!("http://{listen}/metrics")).await.expect("the hub's /metrics");
    let text = r.text().await.expect("the hub's /metrics");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split([' ', '{']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The approvals of a problem-record result, one per level, as a province's chain gives them.
pub fn approvals(levels: &[schemas::messages::Level]) -> schemas::messages::UpTo<schemas::messages::Approval, 8> {
    let approval = |level: &schemas::messages::Level| schemas::messages::Approval {
        level: *level,
        unit: "某教育局".parse().expect("unit"),
        reviewer: "钱科长".parse().expect("reviewer"),
        approved_at: chrono::Utc::now(),
        opinion: Some("同意。".parse().expect("opinion")),
    };
    schemas::messages::UpTo::new(levels.iter().map(approval).collect()).expect("at most 8 levels")
}

#[cfg(test)]
mod port_tests {
    #[test]
    fn free_ports_are_never_handed_out_twice() {
        // 2,000 draws from 12,000 ports would repeat one about 160 times without the record.
        let ports: Vec<u16> = (0..2000).map(|_| super::free_port()).collect();
        let distinct: std::collections::HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
    }
}
