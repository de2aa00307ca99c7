//! An adapter process of a test world: its configuration, its start and its local API and
//! store, as a province's operator would see them.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::*;

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
