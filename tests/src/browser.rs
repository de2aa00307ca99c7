//! The console in a real browser: the operator API's router served over HTTPS with client
//! certificates from this process (against an in-process hub's database), and headless
//! Chromium driven through chromedriver, presenting the certificate of its own NSS database —
//! the way an operator's browser presents the certificate their office installed. Needs
//! Debian's `chromium`, `chromium-driver` and `libnss3-tools`, and the policy that selects the
//! certificate without a prompt (`tests/services.sh` installs them).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use certs::{Issued, Profile, Role};
use fantoccini::{Client, ClientBuilder, Locator};

use crate::inprocess::Hub;
use crate::{eventually, free_port};

/// The console served over HTTPS for one test.
pub struct Console {
    pub base: String,
    /// The CA browsers must trust (the in-process hub's).
    pub ca_pem: String,
    stop: tokio::sync::watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

impl Console {
    pub async fn serve(hub: &Hub) -> Console {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut profile = Profile::new(Role::Server("localhost".into()), 30);
        profile.alt_names = vec!["localhost".into(), "127.0.0.1".into()];
        let server = hub.ca.issue(&profile).expect("server certificate");
        server.write(dir.path(), "server").expect("server files");
        std::fs::write(dir.path().join("ca.pem"), hub.ca.cert_pem()).expect("ca file");
        let p = |f: &str| dir.path().join(f);
        let tls = certs::serve::tls_config(&p("server.pem"), &p("server.key"), &p("ca.pem")).expect("TLS");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(certs::serve::serve(
            listener,
            Some(Arc::new(tls)),
            hub::api::ops::router(hub.ctx.clone()),
            certs::serve::Limits::default(),
            Arc::new(certs::serve::Gauges::default()),
            stopped,
        ));
        Console { base: format!("https://127.0.0.1:{port}"), ca_pem: hub.ca.cert_pem().to_owned(), stop, _dir: dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// An HTTPS client of the console presenting `identity` and trusting the hub's CA.
    pub fn client(&self, identity: &Issued) -> reqwest::Client {
        let mut pem = identity.cert_pem.clone().into_bytes();
        pem.extend(identity.key_pem.as_bytes());
        reqwest::Client::builder()
            .identity(reqwest::Identity::from_pem(&pem).expect("identity"))
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("ca"))
            .build()
            .expect("client")
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// A certificate issued for `role` and registered with the hub (as `hub certs register` would).
pub async fn staff(hub: &Hub, role: Role) -> Issued {
    let issued = hub.ca.issue(&Profile::new(role, 30)).expect("certificate");
    let mut conn = hub.pool.acquire().await.expect("connection");
    hub::store::certs::register(&mut conn, &issued.info).await.expect("registered");
    issued
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e} (tests/services.sh installs libnss3-tools)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An NSS database under `home` that trusts `ca_pem` and holds `identity`, if any.
fn nss_database(home: &Path, ca_pem: &str, identity: Option<&Issued>) {
    let db = home.join(".pki/nssdb");
    std::fs::create_dir_all(&db).expect("nssdb dir");
    let sql = format!("sql:{}", db.display());
    run(Command::new("certutil").args(["-N", "-d", &sql, "--empty-password"]));
    std::fs::write(home.join("ca.pem"), ca_pem).expect("ca");
    run(Command::new("certutil")
        .args(["-A", "-d", &sql, "-n", "exchange-ca", "-t", "CT,,", "-i"])
        .arg(home.join("ca.pem")));
    if let Some(id) = identity {
        id.write(home, "client").expect("client files");
        let p12 = home.join("client.p12");
        run(Command::new("openssl")
            .args(["pkcs12", "-export", "-passout", "pass:", "-name", "client", "-in"])
            .arg(home.join("client.pem"))
            .arg("-inkey")
            .arg(home.join("client.key"))
            .arg("-out")
            .arg(&p12));
        run(Command::new("pk12util").args(["-d", &sql, "-W", "", "-i"]).arg(&p12));
    }
}

/// Headless Chromium with one certificate (or none), driven through its own chromedriver.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _home: tempfile::TempDir,
}

impl Browser {
    pub async fn start(console: &Console, identity: Option<&Issued>) -> Browser {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let home = tempfile::tempdir().expect("browser home");
        nss_database(home.path(), &console.ca_pem, identity);
        let port = free_port();
        // Chromium reads the NSS database of $HOME; chromedriver passes its environment on.
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .env("HOME", home.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (tests/services.sh installs chromium-driver)");
        let status = format!("http://127.0.0.1:{port}/status");
        eventually("chromedriver ready", Duration::from_secs(30), || async {
            reqwest::get(&status).await.ok().filter(|r| r.status().is_success()).map(|_| ())
        })
        .await;
        let profile = home.path().join("profile");
        let caps = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                         "--window-size=1400,1000", format!("--user-data-dir={}", profile.display())],
            },
        });
        let serde_json::Value::Object(caps) = caps else { unreachable!() };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a browser session");
        Browser { client, driver, _home: home }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigation");
    }

    /// The text of the first element matching `css`, once there is one.
    pub async fn text(&self, css: &str) -> String {
        let found = self.client.wait().at_most(Duration::from_secs(15)).for_element(Locator::Css(css)).await;
        let source = if found.is_err() { self.client.source().await.unwrap_or_default() } else { String::new() };
        found.unwrap_or_else(|e| panic!("no {css}: {e}\n{source}")).text().await.expect("text")
    }

    /// The page's whole text.
    pub async fn body(&self) -> String {
        self.text("body").await
    }

    /// Waits until the text of `css` contains `wanted` (the page reloads after an action).
    pub async fn until_text(&self, css: &str, wanted: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let t = match self.client.find(Locator::Css(css)).await {
                Ok(e) => e.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if t.contains(wanted) {
                return t;
            }
            assert!(std::time::Instant::now() < deadline, "{css} never showed {wanted:?}; last: {t}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Types `note` into the form `form_css`, submits it, and accepts the confirmation.
    pub async fn act(&self, form_css: &str, note: &str) {
        let form = self.client.find(Locator::Css(form_css)).await.expect("the action's form");
        form.find(Locator::Css("input[name=note]")).await.expect("a note field").send_keys(note).await.expect("typed");
        self.submit(form_css).await;
    }

    /// Submits the form `form_css` and accepts the confirmation.
    pub async fn submit(&self, form_css: &str) {
        let form = self.client.find(Locator::Css(form_css)).await.expect("the action's form");
        form.find(Locator::Css("button[type=submit]")).await.expect("a button").click().await.expect("clicked");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.client.accept_alert().await.is_err() {
            assert!(std::time::Instant::now() < deadline, "no confirmation asked");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Saves a screenshot (PNG) of the page.
    pub async fn screenshot(&self, path: &Path) {
        let png = self.client.screenshot().await.expect("screenshot");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot dir");
        }
        std::fs::write(path, png).expect("screenshot written");
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}
