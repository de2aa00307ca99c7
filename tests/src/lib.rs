//! End-to-end harness. Each test gets its own world on the real services that
//! `tests/services.sh` provisions: a fresh PostgreSQL database, a fresh broker vhost with the
//! hub's topology, certificates issued by the development CA, and the hub and adapters as real
//! processes. Nothing here mocks the broker or the database.

pub mod world;

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use certs::{Ca, Profile, Role};
use hub::broker_admin::Admin;
use hub::config::Settings;
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

/// What a test needs beyond the shared services.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// A RabbitMQ node of its own, which the test may stop and restart.
    pub dedicated_broker: bool,
    /// A PostgreSQL instance of its own, which the test may crash and restart.
    pub dedicated_database: bool,
    /// The hub's message size limit, when a test needs a small one.
    pub max_message_bytes: Option<usize>,
    /// More hub settings (TOML tables such as `[cases]` or `[provinces."37"]`).
    pub extra_toml: String,
    /// More keys of the hub's `[limits]` table (one `key = value` per line).
    pub extra_limits: String,
}

/// Runs `tests/services.sh` with arguments (for dedicated instances).
fn services(args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("services.sh");
    let out = Command::new("bash").arg(script).args(args).output().expect("run tests/services.sh");
    assert!(
        out.status.success(),
        "services.sh {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One test's world: its database, its vhost, its certificates, its processes.
pub struct TestBed {
    pub env: DevEnv,
    pub id: String,
    pub dir: tempfile::TempDir,
    pub settings: Settings,
    pub settings_path: PathBuf,
    pub ca: Ca,
    pub options: Options,
    admitted: Mutex<Vec<String>>,
    children: Mutex<Vec<(String, Child)>>,
}

impl TestBed {
    /// Creates the database and the vhost, provisions the broker topology and admits the hub.
    ///
    /// # Panics
    /// When the services are not there; the message says how to provision them.
    pub async fn new() -> TestBed {
        Self::with(Options::default()).await
    }

    /// As [`TestBed::new`], with dedicated instances or limits.
    pub async fn with(options: Options) -> TestBed {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut env = DevEnv::load().expect("development services");
        let id = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        if options.dedicated_broker {
            let (a, m, d) = (free_port(), free_port(), free_port());
            tokio::task::block_in_place(|| {
                services(&["node", "start", &id, &a.to_string(), &m.to_string(), &d.to_string()])
            });
            env.amqps_url = format!("amqps://localhost:{a}");
            env.mgmt_url = format!("http://127.0.0.1:{m}");
            env.crl_dir = env.crl_dir.parent().and_then(Path::parent).expect("dev dir").join(format!("nodes/{id}/crl"));
        }
        if options.dedicated_database {
            let port = free_port();
            tokio::task::block_in_place(|| services(&["pg", "start", &id, &port.to_string()]));
            env.pg_url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        }
        let admin_pool = sqlx::PgPool::connect(&env.pg_url).await.expect("PostgreSQL reachable");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{id}\"")))
            .execute(&admin_pool)
            .await
            .expect("create database");
        admin_pool.close().await;
        let db_url = format!("{}/{id}", env.pg_url.rsplit_once('/').expect("URL with a database").0);
        let dir = tempfile::tempdir().expect("temp dir");
        let settings_path = dir.path().join("hub.toml");
        let port = free_port();
        let toml = format!(
            r#"
[database]
url = "{db_url}"
max_connections = 8

[broker]
url = "{amqps}"
vhost = "{id}"
ca = "{ca}"
cert = "{hub_cert}"
key = "{hub_key}"
prefetch = 32
delivery_limit = 5

[broker.admin]
url = "{mgmt}"
user = "{mgmt_user}"
password = "{mgmt_password}"
statistics_interval_ms = 1000

[pki]
ca = "{ca}"
ca_key = "{ca_key}"
crl_dir = "{crl}"

[http]
listen = "127.0.0.1:{port}"

[limits]
workers = 8
max_message_bytes = {max_bytes}
{extra_limits}
"#,
            extra_limits = options.extra_limits,
            max_bytes = options.max_message_bytes.unwrap_or(schemas::DEFAULT_MAX_BYTES),
            amqps = env.amqps_url,
            ca = env.ca_cert.display(),
            hub_cert = env.hub_cert.display(),
            hub_key = env.hub_key.display(),
            mgmt = env.mgmt_url,
            mgmt_user = env.mgmt_user,
            mgmt_password = env.mgmt_password,
            ca_key = env.pki_dir.join("ca.key").display(),
            crl = env.crl_dir.display(),
        );
        // The operator API: the hub's server certificate, operators' certificates from the CA.
        let ca = Ca::load(&env.pki_dir).expect("development CA");
        let mut server = Profile::new(Role::Server("localhost".into()), 30);
        server.alt_names = vec!["localhost".into(), "127.0.0.1".into()];
        ca.issue(&server).expect("server certificate").write(dir.path(), "hub-server").expect("write");
        let ops_port = free_port();
        let toml = format!(
            "{toml}\n[ops]\nlisten = \"127.0.0.1:{ops_port}\"\ncert = \"{d}/hub-server.pem\"\nkey = \"{d}/hub-server.key\"\nclient_ca = \"{ca}\"\n\n{extra}\n",
            d = dir.path().display(),
            ca = env.ca_cert.display(),
            extra = options.extra_toml,
        );
        std::fs::write(&settings_path, toml).expect("write hub.toml");
        let settings = Settings::load(&settings_path).expect("valid hub settings");
        hub::provision::provision(&settings, &[]).await.expect("broker provisioned");
        TestBed {
            env,
            id,
            dir,
            settings,
            settings_path,
            ca,
            options,
            admitted: Mutex::new(vec![]),
            children: Mutex::new(vec![]),
        }
    }

    /// Restarts this test's own broker node (stop, then start; durable queues survive).
    pub fn restart_broker(&self) {
        assert!(self.options.dedicated_broker, "only a dedicated broker may be restarted");
        tokio::task::block_in_place(|| services(&["node", "restart", &self.id]));
    }

    /// Stops this test's own broker node.
    pub fn stop_broker(&self) {
        assert!(self.options.dedicated_broker, "only a dedicated broker may be stopped");
        tokio::task::block_in_place(|| services(&["node", "stop", &self.id]));
    }

    /// Starts this test's own broker node again.
    pub fn start_broker(&self) {
        assert!(self.options.dedicated_broker, "only a dedicated broker may be started");
        tokio::task::block_in_place(|| services(&["node", "start", &self.id]));
    }

    /// Crashes (immediate stop) and restarts this test's own PostgreSQL.
    pub fn restart_database(&self) {
        assert!(self.options.dedicated_database, "only a dedicated database may be restarted");
        tokio::task::block_in_place(|| services(&["pg", "restart", &self.id]));
    }

    /// Issues a certificate with the development CA into this test's directory.
    pub fn issue(&self, profile: &Profile, stem: &str) -> Creds {
        let issued = self.ca.issue(profile).expect("issue certificate");
        issued.write(self.dir.path(), stem).expect("write certificate");
        Creds {
            cert: self.dir.path().join(format!("{stem}.pem")),
            key: self.dir.path().join(format!("{stem}.key")),
            serial: issued.info.serial,
        }
    }

    /// Issues a province certificate (valid a year) and admits the province on the broker.
    pub async fn add_province(&self, code: &str) -> Creds {
        let p = ProvinceCode::parse(code).expect("province code");
        let creds = self.issue(
            &Profile::new(Role::Province(p), 365),
            &format!("prov-{code}-{}", self.admitted.lock().unwrap().len()),
        );
        hub::provision::add_province(&self.settings, &creds.cert).await.expect("province admitted");
        self.admitted.lock().unwrap().push(creds.serial.clone());
        creds
    }

    /// Connects as a province (or anyone), retrying while the broker settles (a just-admitted
    /// province's user and permissions).
    pub async fn connect(&self, creds: &Creds) -> Connection {
        let mut last = None;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            match self.env.connect(&self.id, &creds.cert, &creds.key).await {
                Ok(c) => return c,
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("could not connect with {}: {:?}", creds.cert.display(), last);
    }

    /// The management API client.
    pub fn admin(&self) -> Admin {
        Admin::new(self.settings.broker.admin.as_ref().expect("admin settings")).expect("admin client")
    }

    /// A pool on this test's database.
    pub async fn db(&self) -> sqlx::PgPool {
        let pool = hub::store::pool(&self.settings.database).expect("pool");
        hub::store::migrate(&pool).await.expect("migrations");
        pool
    }

    /// Starts a hub process on this test's settings and waits until it is ready.
    pub async fn spawn_hub(&self, name: &str) -> u32 {
        self.spawn_hub_with(name, &self.settings_path, &[]).await
    }

    /// Starts a hub process with other settings and extra environment (e.g. `XJ_CRASH_AT`),
    /// and waits until it is ready.
    pub async fn spawn_hub_with(&self, name: &str, settings: &Path, env: &[(&str, &str)]) -> u32 {
        let pid = self.start_hub(name, settings, env);
        let listen = Settings::load(settings).expect("settings").http.listen;
        let url = format!("http://{listen}/readyz");
        let what = format!("{name} ready at {url} (log: {}/{name}.log)", self.dir.path().display());
        eventually(&what, Duration::from_secs(60), || {
            let url = url.clone();
            let exited = self
                .children
                .lock()
                .unwrap()
                .iter_mut()
                .find(|(n, _)| n == name)
                .and_then(|(_, c)| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!("{name} exited before it was ready ({status}):\n{}", self.log(name));
            }
            async move {
                match reqwest::get(&url).await {
                    Ok(r) if r.status().is_success() => Some(()),
                    _ => None,
                }
            }
        })
        .await;
        pid
    }

    /// Starts a hub process without waiting for it (it may crash at once, by design).
    pub fn start_hub(&self, name: &str, settings: &Path, env: &[(&str, &str)]) -> u32 {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{name}.log")))
            .expect("log file");
        let mut cmd = Command::new(binary("hub"));
        cmd.args(["run", "--config"])
            .arg(settings)
            .env("RUST_LOG", "info,hub=debug,sqlx=warn,lapin=warn")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn hub");
        let pid = child.id();
        self.children.lock().unwrap().push((name.to_owned(), child));
        pid
    }

    /// Writes a copy of the hub settings with other ports (for a second hub process).
    pub fn settings_copy(&self, name: &str) -> (PathBuf, std::net::SocketAddr) {
        let mut text = std::fs::read_to_string(&self.settings_path).expect("settings");
        let port = free_port();
        let listen: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
        text = text.replace(&self.settings.http.listen.to_string(), &listen.to_string());
        if let Some(ops) = &self.settings.ops {
            text = text.replace(&ops.listen.to_string(), &format!("127.0.0.1:{}", free_port()));
        }
        let path = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).expect("write settings");
        (path, listen)
    }

    /// Waits for a named process to exit by itself (e.g. at a crash point).
    pub async fn wait_exit(&self, name: &str, timeout: Duration) -> std::process::ExitStatus {
        eventually(&format!("{name} to exit"), timeout, || async { self.exited(name) }).await
    }

    /// The exit status of a named process if it has exited (and then forgets it).
    pub fn exited(&self, name: &str) -> Option<std::process::ExitStatus> {
        let mut children = self.children.lock().unwrap();
        let pos = children.iter().position(|(n, _)| n == name)?;
        let status = children[pos].1.try_wait().ok().flatten()?;
        children.remove(pos);
        Some(status)
    }

    /// Kills a named process with SIGKILL (no chance to clean up) and reaps it.
    pub fn kill(&self, name: &str) {
        let mut children = self.children.lock().unwrap();
        if let Some(pos) = children.iter().position(|(n, _)| n == name) {
            let (_, mut child) = children.remove(pos);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops a named process with SIGTERM and waits for it to exit.
    pub fn stop(&self, name: &str) -> Option<std::process::ExitStatus> {
        let mut children = self.children.lock().unwrap();
        let pos = children.iter().position(|(n, _)| n == name)?;
        let (_, mut child) = children.remove(pos);
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        child.wait().ok()
    }

    /// The log of a process started by this bed.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }
}

impl Drop for TestBed {
    fn drop(&mut self) {
        for (_, mut child) in self.children.lock().unwrap().drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::env::var_os("XJ_KEEP").is_some() || std::thread::panicking() {
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir")).keep();
            eprintln!(
                "kept {} (database, vhost, instances; `tests/services.sh purge` removes them) and the logs in {}",
                self.id,
                dir.display()
            );
            return;
        }
        if self.options.dedicated_broker {
            services(&["node", "delete", &self.id]);
        }
        if self.options.dedicated_database {
            services(&["pg", "delete", &self.id]);
        }
        if self.options.dedicated_broker && self.options.dedicated_database {
            return;
        }
        // Cleanup runs on a thread of its own: Drop may run inside a runtime.
        let (id, pg_url, admin) = (self.id.clone(), self.env.pg_url.clone(), self.settings.broker.admin.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                if let Some(a) = admin.and_then(|a| Admin::new(&a).ok()) {
                    let _ = a.delete_vhost(&id).await;
                }
                if let Ok(pool) = sqlx::PgPool::connect(&pg_url).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{id}\" WITH (FORCE)")))
                        .execute(&pool)
                        .await;
                }
            });
        })
        .join();
    }
}

/// A free TCP port on 127.0.0.1 for a process a test starts (checked by binding and releasing it).
///
/// Chosen at random below the kernel's ephemeral range (32768–60999): a port the kernel hands out
/// for "any port" may be handed out again to another test, or used by an outgoing connection, in
/// the second before the started process binds it.
pub fn free_port() -> u16 {
    loop {
        // The random bits of a v4 UUID: no extra dependency for one random number.
        let n = u16::from_le_bytes(uuid::Uuid::new_v4().as_bytes()[..2].try_into().expect("two bytes"));
        let port = 20_000 + n % 12_000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Publishes `body` with confirms, with `user_id` set as given; returns the broker's verdict or
/// the channel error (a forged `user_id` closes the channel).
pub async fn publish(conn: &Connection, exchange: &str, routing_key: &str, body: &[u8], user_id: &str) -> Result<()> {
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let confirm = ch
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions { mandatory: true, ..Default::default() },
            body,
            lapin::BasicProperties::default()
                .with_user_id(user_id.into())
                .with_message_id(uuid::Uuid::new_v4().to_string().into())
                .with_delivery_mode(2),
        )
        .await?
        .await?;
    match confirm {
        lapin::Confirmation::Ack(None) => Ok(()),
        other => bail!("not confirmed: {other:?}"),
    }
}

/// Takes the next message from `queue` (basic.get, acked), waiting up to `timeout`.
pub async fn next_message(
    conn: &Connection,
    queue: &str,
    timeout: Duration,
) -> Option<lapin::message::BasicGetMessage> {
    use lapin::options::{BasicAckOptions, BasicGetOptions};
    let ch = conn.create_channel().await.ok()?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(m)) = ch.basic_get(queue.into(), BasicGetOptions::default()).await {
            let _ = m.delivery.ack(BasicAckOptions::default()).await;
            return Some(m);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads the next envelope the hub sent to `province`'s queue.
pub async fn next_envelope(conn: &Connection, province: &str, timeout: Duration) -> Option<schemas::Envelope> {
    let p = ProvinceCode::parse(province).expect("province code");
    let m = next_message(conn, &hub::amqp::names::province_queue(p), timeout).await?;
    Some(schemas::codec::from_xml(&m.delivery.data, schemas::DEFAULT_MAX_BYTES).expect("the hub sends valid messages"))
}

/// A dead letter as the hub keeps it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeadLetter {
    #[sqlx(rename = "dead_letter_id")]
    pub id: i64,
    pub sender: String,
    pub code: String,
    pub reason: String,
    pub size: i64,
    pub sha256: Vec<u8>,
    pub body: Vec<u8>,
    pub truncated: bool,
    pub source: String,
}

impl TestBed {
    /// The next dead letter the hub recorded after `after` (its id), waiting up to `timeout`.
    pub async fn next_dead_letter(&self, after: i64, timeout: Duration) -> Option<DeadLetter> {
        let pool = self.db().await;
        let deadline = Instant::now() + timeout;
        loop {
            let row: Option<DeadLetter> = sqlx::query_as(
                "SELECT dead_letter_id, sender, code, reason, size, sha256, body, truncated, source FROM dead_letter
                 WHERE dead_letter_id > $1 ORDER BY dead_letter_id LIMIT 1",
            )
            .bind(after)
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten();
            if row.is_some() {
                return row;
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
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

/// Collects the envelopes the hub sent to `province` until `n` distinct message ids arrived or
/// `timeout` passed; duplicates (same id) are counted separately.
pub async fn collect(conn: &Connection, province: &str, n: usize, timeout: Duration) -> Collected {
    let deadline = Instant::now() + timeout;
    let mut seen = std::collections::HashSet::new();
    let mut out = Collected::default();
    while seen.len() < n && Instant::now() < deadline {
        match next_envelope(conn, province, Duration::from_millis(500)).await {
            Some(env) => {
                if seen.insert(env.message_id) {
                    out.envelopes.push(env);
                } else {
                    out.duplicates += 1;
                }
            }
            None => continue,
        }
    }
    out
}

/// What [`collect`] found.
#[derive(Debug, Default)]
pub struct Collected {
    pub envelopes: Vec<schemas::Envelope>,
    /// Copies of a message id already received (at-least-once redelivery).
    pub duplicates: usize,
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

/// A publisher that keeps trying — reconnecting across broker outages — until the broker
/// confirms each message, as an adapter does. Retrying the same message id is safe: the hub
/// deduplicates.
pub struct Persistent<'a> {
    bed: &'a TestBed,
    creds: Creds,
    user: String,
    conn: Option<(Connection, lapin::Channel)>,
}

impl<'a> Persistent<'a> {
    pub fn new(bed: &'a TestBed, creds: &Creds, province: &str) -> Self {
        Persistent { bed, creds: creds.clone(), user: format!("prov-{province}"), conn: None }
    }

    /// Publishes `env` to the hub until confirmed (deadline two minutes).
    pub async fn send(&mut self, env: &schemas::Envelope) {
        use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
        let body = schemas::codec::to_xml(env);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            assert!(Instant::now() < deadline, "could not publish {} within two minutes", env.message_id);
            if self.conn.is_none() {
                let Ok(Ok(conn)) = tokio::time::timeout(
                    Duration::from_secs(5),
                    self.bed.env.connect(&self.bed.id, &self.creds.cert, &self.creds.key),
                )
                .await
                else {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                };
                let Ok(ch) = conn.create_channel().await else { continue };
                if ch.confirm_select(ConfirmSelectOptions::default()).await.is_err() {
                    continue;
                }
                self.conn = Some((conn, ch));
            }
            let (_, ch) = self.conn.as_ref().expect("connected above");
            let props = lapin::BasicProperties::default()
                .with_user_id(self.user.as_str().into())
                .with_message_id(env.message_id.to_string().into())
                .with_delivery_mode(2);
            let sent = async {
                ch.basic_publish(
                    hub::amqp::names::INBOUND_EXCHANGE.into(),
                    env.message_type().as_str().into(),
                    BasicPublishOptions { mandatory: true, ..Default::default() },
                    body.as_bytes(),
                    props,
                )
                .await?
                .await
            };
            match tokio::time::timeout(Duration::from_secs(10), sent).await {
                Ok(Ok(lapin::Confirmation::Ack(None))) => return,
                _ => {
                    self.conn = None;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
    }
}

/// Publishes raw bytes with optional `user_id` (a message without one cannot be attributed).
pub async fn publish_raw(conn: &Connection, body: &[u8], user_id: Option<&str>, message_id: &str) -> Result<()> {
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let mut props = lapin::BasicProperties::default().with_message_id(message_id.into()).with_delivery_mode(2);
    if let Some(u) = user_id {
        props = props.with_user_id(u.into());
    }
    let confirm = ch
        .basic_publish(
            hub::amqp::names::INBOUND_EXCHANGE.into(),
            "raw".into(),
            BasicPublishOptions { mandatory: true, ..Default::default() },
            body,
            props,
        )
        .await?
        .await?;
    match confirm {
        lapin::Confirmation::Ack(None) => Ok(()),
        other => bail!("not confirmed: {other:?}"),
    }
}

/// A running adapter process and how to reach it.
#[derive(Debug, Clone)]
pub struct AdapterProc {
    pub name: String,
    pub api: std::net::SocketAddr,
    pub db: PathBuf,
    pub config: PathBuf,
}

impl AdapterProc {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    /// Submits an envelope as XML; returns the HTTP status and the JSON answer.
    pub async fn submit(&self, env: &schemas::Envelope) -> (u16, serde_json::Value) {
        self.submit_raw(schemas::codec::to_xml(env).into_bytes(), "application/xml").await
    }

    /// Submits raw bytes with a content type.
    pub async fn submit_raw(&self, body: Vec<u8>, content_type: &str) -> (u16, serde_json::Value) {
        let r = reqwest::Client::new()
            .post(self.url("/messages"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("adapter API reachable");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or_default())
    }

    /// GETs a JSON resource of the local API.
    pub async fn get(&self, path: &str) -> serde_json::Value {
        reqwest::get(self.url(path)).await.expect("adapter API reachable").json().await.expect("JSON")
    }

    /// A read-only look at the adapter's SQLite store.
    pub async fn store(&self) -> sqlx::SqlitePool {
        let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(&self.db).read_only(true);
        sqlx::SqlitePool::connect_with(opts).await.expect("adapter store")
    }
}

impl TestBed {
    /// Writes an adapter configuration for `creds` and starts it; waits for its local API.
    pub async fn spawn_adapter(&self, name: &str, creds: &Creds, env: &[(&str, &str)]) -> AdapterProc {
        let proc = self.adapter_config(name, creds);
        self.start_adapter(&proc, env);
        let url = proc.url("/healthz");
        eventually(
            &format!("adapter {name} listening (log {})", self.dir.path().join(format!("{name}.log")).display()),
            Duration::from_secs(30),
            || {
                let url = url.clone();
                async move { reqwest::get(&url).await.ok().filter(|r| r.status().is_success()).map(|_| ()) }
            },
        )
        .await;
        proc
    }

    /// Writes an adapter configuration with more settings (`extra`: TOML appended, e.g.
    /// `[api.limits]`) and starts it; waits for its local API.
    pub async fn spawn_adapter_with(&self, name: &str, creds: &Creds, extra: &str) -> AdapterProc {
        let proc = self.adapter_config(name, creds);
        let mut text = std::fs::read_to_string(&proc.config).expect("adapter config");
        text.push_str(extra);
        std::fs::write(&proc.config, text).expect("write adapter config");
        self.start_adapter(&proc, &[]);
        let url = proc.url("/healthz");
        eventually(&format!("adapter {name} listening"), Duration::from_secs(30), || {
            let url = url.clone();
            async move { reqwest::get(&url).await.ok().filter(|r| r.status().is_success()).map(|_| ()) }
        })
        .await;
        proc
    }

    /// The configuration of an adapter (written, not started).
    pub fn adapter_config(&self, name: &str, creds: &Creds) -> AdapterProc {
        let api: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("address");
        let db = self.dir.path().join(format!("{name}.db"));
        let config = self.dir.path().join(format!("{name}.toml"));
        let toml = format!(
            r#"
[broker]
url = "{url}"
vhost = "{vhost}"
ca = "{ca}"
cert = "{cert}"
key = "{key}"

[storage]
path = "{db}"

[api]
listen = "{api}"
"#,
            url = self.env.amqps_url,
            vhost = self.id,
            ca = self.env.ca_cert.display(),
            cert = creds.cert.display(),
            key = creds.key.display(),
            db = db.display(),
        );
        std::fs::write(&config, toml).expect("write adapter config");
        AdapterProc { name: name.to_owned(), api, db, config }
    }

    /// Starts a simulated provincial system against `adapter`; its stdout is returned for the
    /// caller to show (the demo prints it).
    pub fn spawn_simulator(&self, name: &str, adapter: &AdapterProc, args: &[&str]) -> std::process::ChildStdout {
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log"))).expect("log file");
        let mut child = Command::new(binary("adapter"))
            .arg("simulate")
            .arg("--adapter")
            .arg(format!("http://{}", adapter.api))
            .arg("--data")
            .arg(self.dir.path().join(format!("{name}.db")))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn simulator");
        let out = child.stdout.take().expect("piped stdout");
        self.children.lock().unwrap().push((name.to_owned(), child));
        out
    }

    /// Starts (or restarts) an adapter process without waiting.
    pub fn start_adapter(&self, proc: &AdapterProc, env: &[(&str, &str)]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", proc.name)))
            .expect("log file");
        let mut cmd = Command::new(binary("adapter"));
        cmd.args(["run", "--config"])
            .arg(&proc.config)
            .env("RUST_LOG", "info,adapters=debug,sqlx=warn,lapin=warn")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn adapter");
        self.children.lock().unwrap().push((proc.name.clone(), child));
    }
}

impl TestBed {
    /// An operator (or national-office) client of the operator API: a certificate issued and
    /// admitted for it.
    pub async fn operator(&self, role: Role) -> Operator {
        let stem = role.common_name();
        let creds = self.issue(&Profile::new(role, 30), &stem);
        hub::provision::admit_person(&self.settings, &creds.cert).await.expect("operator admitted");
        Operator::new(self, &creds)
    }

    /// A client of the operator API with any certificate (e.g. to check a refusal).
    pub fn operator_with(&self, creds: &Creds) -> Operator {
        Operator::new(self, creds)
    }

    /// Registers the schools of simulated provinces (as the institution-code system would).
    pub async fn register_schools(&self, provinces: &[(&str, usize)], seed: u64) {
        let mut schools = Vec::new();
        for (code, students) in provinces {
            let p = ProvinceCode::parse(code).expect("province");
            for s in adapters::simulate::data::generate(p, *students, seed).schools {
                schools.push(hub::store::schools::School {
                    code: s.code.to_string(),
                    province: code.to_string(),
                    name: s.name,
                    active: true,
                    code_usable_from: None,
                });
            }
        }
        let pool = self.db().await;
        let mut tx = pool.begin().await.expect("tx");
        hub::store::schools::upsert(&mut tx, &schools).await.expect("schools");
        tx.commit().await.expect("commit");
    }
}

/// A client of the hub's operator API, authenticated by its certificate.
pub struct Operator {
    client: reqwest::Client,
    base: String,
}

impl Operator {
    fn new(bed: &TestBed, creds: &Creds) -> Operator {
        let mut identity = std::fs::read(&creds.cert).expect("cert");
        identity.extend(std::fs::read(&creds.key).expect("key"));
        let client = reqwest::Client::builder()
            .identity(reqwest::Identity::from_pem(&identity).expect("identity"))
            .add_root_certificate(
                reqwest::Certificate::from_pem(&std::fs::read(&bed.env.ca_cert).expect("ca")).expect("ca"),
            )
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let listen = bed.settings.ops.as_ref().expect("ops API configured").listen;
        Operator { client, base: format!("https://localhost:{}", listen.port()) }
    }

    /// GETs a JSON resource; returns the status and the body.
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        match self.client.get(format!("{}{path}", self.base)).send().await {
            Ok(r) => (r.status().as_u16(), r.json().await.unwrap_or_default()),
            Err(e) => (0, serde_json::json!({ "transport": e.to_string() })),
        }
    }

    /// POSTs an action with a note.
    pub async fn act(&self, case: &str, action: &str, note: &str) -> (u16, serde_json::Value) {
        let r = self
            .client
            .post(format!("{}/ops/cases/{case}/{action}", self.base))
            .json(&serde_json::json!({ "note": note }))
            .send()
            .await
            .expect("operator API reachable");
        (r.status().as_u16(), r.json().await.unwrap_or_default())
    }
}
