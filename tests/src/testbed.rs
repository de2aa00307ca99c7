//! A world of real processes for one test: the hub and adapters spawned from the built
//! binaries, on a fresh database and vhost, with their certificates; stopped, killed and
//! restarted as the crash tests need.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use certs::{Ca, Profile, Role};
use hub::broker_admin::Admin;
use hub::config::Settings;
use lapin::Connection;
use schemas::ids::ProvinceCode;

use crate::*;

/// What a test needs beyond the shared services.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// A RabbitMQ node of its own, which the test may stop and restart.
    pub dedicated_broker: bool,
    /// With `dedicated_broker`: a cluster of this many nodes of its own (the hub and the
    /// adapters are given every node's URL), whose nodes the test may kill one at a time.
    pub cluster_nodes: Option<usize>,
    /// A PostgreSQL instance of its own, which the test may crash and restart.
    pub dedicated_database: bool,
    /// The hub's message size limit, when a test needs a small one.
    pub max_message_bytes: Option<usize>,
    /// More hub settings (TOML tables such as `[cases]` or `[provinces."37"]`).
    pub extra_toml: String,
    /// More keys of the hub's `[limits]` table (one `key = value` per line).
    pub extra_limits: String,
    /// The hub's log filter (`RUST_LOG`); by default INFO with the hub's own DEBUG lines.
    pub hub_log: Option<&'static str>,
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

/// Starts a broker node of the test's own on ports free when chosen; when another test bound
/// one of them before the node did (services.sh exits 3), the node is made again on others.
fn start_node(name: &str) -> (u16, u16) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("services.sh");
    for attempt in 1..=3 {
        let (a, m, d) = (free_port(), free_port(), free_port());
        let out = Command::new("bash")
            .arg(&script)
            .args(["node", "start", name, &a.to_string(), &m.to_string(), &d.to_string()])
            .output()
            .expect("run tests/services.sh");
        if out.status.success() {
            return (a, m);
        }
        let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.code() == Some(3) && attempt < 3, "services.sh node start {name} failed:\n{report}");
        eprintln!("node {name}: a port was taken meanwhile, choosing others:\n{report}");
        services(&["node", "delete", name]);
    }
    unreachable!("the last attempt returns or panics")
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
    pub(crate) children: Mutex<Vec<(String, Child)>>,
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
            let names = Self::node_names(&id, &options);
            let ports: Vec<(u16, u16)> = tokio::task::block_in_place(|| {
                let ports = names.iter().map(|n| start_node(n)).collect();
                for n in &names[1..] {
                    services(&["node", "join", n, &names[0]]);
                }
                ports
            });
            env.amqps_url = ports.iter().map(|(a, _)| format!("amqps://localhost:{a}")).collect::<Vec<_>>().join(",");
            // A cluster is managed through its second node: the test may stop the first, which
            // every process would otherwise try first.
            env.mgmt_url = format!("http://127.0.0.1:{}", ports[ports.len().min(2) - 1].1);
            env.crl_dir =
                env.crl_dir.parent().and_then(Path::parent).expect("dev dir").join(format!("nodes/{}/crl", names[0]));
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

    /// The names of this test's own broker nodes: its id, or for a cluster the id and a number.
    fn node_names(id: &str, options: &Options) -> Vec<String> {
        match options.cluster_nodes {
            Some(n) => (1..=n).map(|i| format!("{id}-{i}")).collect(),
            None => vec![id.to_owned()],
        }
    }

    fn node_action(&self, action: &str, node: usize) {
        assert!(self.options.dedicated_broker, "only a dedicated broker may be stopped, started or killed");
        let names = Self::node_names(&self.id, &self.options);
        tokio::task::block_in_place(|| services(&["node", action, &names[node]]));
    }

    /// How many broker nodes this test has of its own (0: it shares the main one).
    pub fn broker_nodes(&self) -> usize {
        if self.options.dedicated_broker { self.options.cluster_nodes.unwrap_or(1) } else { 0 }
    }

    /// Restarts this test's own broker node (stop, then start; durable queues survive).
    pub fn restart_broker(&self) {
        self.node_action("restart", 0);
    }

    /// Stops this test's own broker node.
    pub fn stop_broker(&self) {
        self.node_action("stop", 0);
    }

    /// Starts this test's own broker node again.
    pub fn start_broker(&self) {
        self.node_action("start", 0);
    }

    /// Crashes this test's own broker node (SIGKILL) and starts it again.
    pub fn kill_broker(&self) {
        self.node_action("kill", 0);
    }

    /// Crashes node `node` (from 0) of this test's own cluster (SIGKILL) and starts it again.
    pub fn kill_broker_node(&self, node: usize) {
        self.node_action("kill", node);
    }

    /// Stops node `node` (from 0) of this test's own cluster.
    pub fn stop_broker_node(&self, node: usize) {
        self.node_action("stop", node);
    }

    /// Starts node `node` (from 0) of this test's own cluster again.
    pub fn start_broker_node(&self, node: usize) {
        self.node_action("start", node);
    }

    /// The URL of node `node` (from 0) of this test's broker.
    pub fn broker_node_url(&self, node: usize) -> String {
        certs::amqp::nodes(&self.env.amqps_url)[node].to_owned()
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

    /// How many messages a queue of this test's vhost holds, as the management API reports it
    /// (its statistics lag by a few seconds).
    pub async fn queue_depth(&self, queue: &str) -> u64 {
        // Test vhosts and queue names need no escaping.
        let url = format!("{}/api/queues/{}/{queue}", self.env.mgmt_url.trim_end_matches('/'), self.id);
        let info: serde_json::Value = reqwest::Client::new()
            .get(&url)
            .basic_auth(&self.env.mgmt_user, Some(&self.env.mgmt_password))
            .send()
            .await
            .expect("management API")
            .json()
            .await
            .expect("queue info");
        info["messages"].as_u64().unwrap_or(0)
    }

    /// Empties a queue of this test's vhost through the management API: what an operator's
    /// mistake, or a broker node lost with its disk, does to undelivered messages.
    pub async fn purge_queue(&self, queue: &str) {
        let url = format!("{}/api/queues/{}/{queue}/contents", self.env.mgmt_url.trim_end_matches('/'), self.id);
        let resp = reqwest::Client::new()
            .delete(&url)
            .basic_auth(&self.env.mgmt_user, Some(&self.env.mgmt_password))
            .send()
            .await
            .expect("management API");
        assert!(resp.status().is_success(), "purge {queue}: {}", resp.status());
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
            .env("RUST_LOG", self.options.hub_log.unwrap_or("info,hub=debug,sqlx=warn,lapin=warn"))
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

    /// The process id of a named process started by this bed, while it runs.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.children.lock().unwrap().iter().find(|(n, _)| n == name).map(|(_, c)| c.id())
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
            for n in Self::node_names(&self.id, &self.options) {
                services(&["node", "delete", &n]);
            }
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
