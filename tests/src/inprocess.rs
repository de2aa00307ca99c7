//! The middle of the test pyramid: the hub's message handling run in this process against a
//! real PostgreSQL database (fresh per test) — no broker, no spawned processes. A test sends a
//! message as a province would (the same bytes, the same authenticated sender), the hub
//! processes it exactly as its consumer would ([`hub::service::handle`]), and the test reads
//! what it wrote to the outbox. Milliseconds per message.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use certs::signature::Signer;
use certs::{Ca, Profile, Role};
use hub::context::Context;
use hub::service::{self, Handled, Inbound};
use schemas::ids::ProvinceCode;
use schemas::messages::{Body, StudentSummary};
use schemas::{Envelope, Party, codec};

use crate::DevEnv;

/// One test's hub, in process.
pub struct Hub {
    pub ctx: Context,
    pub pool: sqlx::PgPool,
    /// The CA the parties' certificates come from (for operators, see [`Hub::ops`]).
    pub ca: Ca,
    database: String,
    admin_url: String,
    _dir: tempfile::TempDir,
}

/// What the hub did with a message.
#[derive(Debug)]
pub struct Sent {
    pub handled: Handled,
    /// What it wrote to the outbox in answer, in order.
    pub replies: Vec<Envelope>,
}

impl Sent {
    /// The refusal's code, if the hub answered with an `error`.
    pub fn refusal(&self) -> Option<&'static str> {
        self.replies.iter().find_map(|e| match &e.body {
            Body::Error(r) => Some(r.code.code()),
            _ => None,
        })
    }

    /// The replies to `province`.
    pub fn to(&self, province: &str) -> Vec<&Envelope> {
        let p = Party::Province(province.parse().expect("province"));
        self.replies.iter().filter(|e| e.recipient == p).collect()
    }
}

/// A province's certificate and key, the same for the whole test process: every in-process
/// hub registers it, so bytes signed once are accepted by any of them (a test compares two
/// hubs on the same messages).
pub fn province(code: &str) -> &'static (certs::CertInfo, Signer) {
    static CA: OnceLock<Ca> = OnceLock::new();
    static ISSUED: OnceLock<Mutex<HashMap<String, &'static (certs::CertInfo, Signer)>>> = OnceLock::new();
    let mut issued = ISSUED.get_or_init(Mutex::default).lock().expect("not poisoned");
    issued.entry(code.to_owned()).or_insert_with(|| {
        let ca = CA.get_or_init(|| Ca::create("In-process provinces' CA", 30).expect("a CA"));
        let made = ca.issue(&Profile::new(Role::Province(code.parse().expect("province")), 30)).expect("issued");
        let signer = Signer::from_pem(made.cert_pem.as_bytes(), made.key_pem.as_bytes()).expect("its key");
        Box::leak(Box::new((made.info, signer)))
    })
}

/// The signature headers (`x-signature`, `x-signer`) of `body` sent by `sender` (`prov-37`),
/// as its adapter sets them.
pub fn signature(sender: &str, body: &[u8]) -> (String, String) {
    let code = sender.strip_prefix("prov-").expect("a province");
    let s = province(code).1.sign(body);
    (s.value_base64(), s.signer)
}

impl Hub {
    /// A fresh database, migrated, with the given provinces admitted and `extra` settings (TOML
    /// tables).
    ///
    /// # Panics
    /// When the development services are not provisioned (`tests/services.sh`).
    pub async fn new(provinces: &[&str], extra: &str) -> Hub {
        let env = DevEnv::load().expect("development services");
        let database = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let admin = sqlx::PgPool::connect(&env.pg_url).await.expect("PostgreSQL reachable");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{database}\""))).execute(&admin).await.unwrap();
        admin.close().await;
        let url = format!("{}/{database}", env.pg_url.rsplit_once('/').expect("URL with a database").0);
        let dir = tempfile::tempdir().expect("temp dir");
        let path: PathBuf = dir.path().join("hub.toml");
        // The broker settings are never used here; the files they name exist.
        let toml = format!(
            "[database]\nurl = \"{url}\"\nmax_connections = 4\n[broker]\nurl = \"amqps://localhost:1\"\nvhost = \"none\"\n\
             ca = \"{ca}\"\ncert = \"{cert}\"\nkey = \"{key}\"\n{extra}\n",
            ca = env.ca_cert.display(),
            cert = env.hub_cert.display(),
            key = env.hub_key.display(),
        );
        std::fs::write(&path, toml).unwrap();
        let settings = hub::config::Settings::load(&path).expect("valid settings");
        let pool = hub::store::pool(&settings.database).unwrap();
        hub::store::migrate(&pool).await.unwrap();
        let ca = Ca::create("In-process CA", 30).unwrap();
        let mut conn = pool.acquire().await.unwrap();
        for p in provinces {
            hub::store::certs::register(&mut conn, &province(p).0).await.unwrap();
        }
        drop(conn);
        let ctx = Context::new(pool.clone(), settings).expect("rules");
        Hub { ctx, pool, ca, database, admin_url: env.pg_url, _dir: dir }
    }

    /// Registers `province`'s certificate (the one [`signature`] signs with): the hub admits it
    /// from now on.
    pub async fn admit(&self, province: &str) {
        let mut conn = self.pool.acquire().await.unwrap();
        hub::store::certs::register(&mut conn, &self::province(province).0).await.unwrap();
    }

    /// Adds or replaces schools of the registry: (code, province, active, usable from).
    pub async fn schools(&self, schools: &[(&str, &str, bool, Option<chrono::DateTime<chrono::Utc>>)]) {
        let rows: Vec<hub::store::schools::School> = schools
            .iter()
            .map(|(code, province, active, from)| hub::store::schools::School {
                code: (*code).into(),
                province: (*province).into(),
                name: format!("学校{code}"),
                active: *active,
                code_usable_from: *from,
                department: Some(format!("{province}0101000000")),
                stages: vec![],
            })
            .collect();
        let mut tx = self.pool.begin().await.unwrap();
        hub::store::schools::upsert(&mut tx, &rows).await.unwrap();
        tx.commit().await.unwrap();
    }

    /// Sends a body from a province, about a case or not; returns what the hub did.
    pub async fn send(&self, from: &str, body: Body, case: Option<schemas::CaseId>) -> Sent {
        let sender = Party::Province(from.parse::<ProvinceCode>().expect("province"));
        let mut env = Envelope::new(sender, Party::Hub, body);
        env.case_id = case;
        self.send_envelope(&env).await
    }

    /// Sends an envelope as its sender's adapter would.
    pub async fn send_envelope(&self, env: &Envelope) -> Sent {
        let body = codec::to_xml(env).into_bytes();
        let user = env.sender.to_string();
        let (signature, signer) = signature(&user, &body);
        self.deliver(&user, &body, (Some(&signature), Some(&signer))).await
    }

    /// Delivers `body` from the broker user `user` with the given signature headers, as the
    /// consumer hands a delivery over; returns what the hub did.
    pub async fn deliver(&self, user: &str, body: &[u8], signature: (Option<&str>, Option<&str>)) -> Sent {
        let before: i64 =
            sqlx::query_scalar("SELECT COALESCE(max(outbox_id), 0) FROM outbox").fetch_one(&self.pool).await.unwrap();
        let inbound = Inbound::new(body, Some(user), signature);
        let handled = service::handle(&self.ctx, inbound).await.expect("handled");
        let rows: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT body FROM outbox_message WHERE outbox_id > $1 AND message_type <> 'dead-letter' ORDER BY outbox_id",
        )
        .bind(before)
        .fetch_all(&self.pool)
        .await
        .unwrap();
        let replies = rows.iter().map(|b| codec::from_xml(b, schemas::DEFAULT_MAX_BYTES).expect("valid")).collect();
        Sent { handled, replies }
    }

    /// Calls the operators' API as `role` (its certificate issued and registered first), the
    /// way the HTTPS server hands a verified client certificate to the routes.
    pub async fn ops(
        &self,
        role: Role,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let (status, bytes) = self.call(role, method, path, body).await;
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    /// Reads a console page as `role`: the status and the HTML.
    pub async fn page(&self, role: Role, path: &str) -> (u16, String) {
        let (status, bytes) = self.call(role, "GET", path, String::new()).await;
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Downloads `path` of the operator API as `role`: the status and the bytes.
    pub async fn download(&self, role: Role, path: &str) -> (u16, axum::body::Bytes) {
        self.call(role, "GET", path, String::new()).await
    }

    async fn call(&self, role: Role, method: &str, path: &str, body: String) -> (u16, axum::body::Bytes) {
        use tower::ServiceExt as _;
        let issued = self.ca.issue(&Profile::new(role, 30)).expect("certificate");
        let mut conn = self.pool.acquire().await.unwrap();
        hub::store::certs::register(&mut conn, &issued.info).await.unwrap();
        drop(conn);
        let mut request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body))
            .unwrap();
        request.extensions_mut().insert(certs::serve::Peer(issued.info));
        let response = hub::api::ops::router(self.ctx.clone()).oneshot(request).await.expect("an answer");
        let status = response.status().as_u16();
        (status, axum::body::to_bytes(response.into_body(), 16 << 20).await.unwrap())
    }

    /// A two-province ID duplicate that both sides attested, waiting for the national office:
    /// 51 registered the student first, 44 the same resident ID and name a week later; each
    /// attested with two approvals and a photo. Returns the group id, then 51's and 44's
    /// national student IDs. (The hub needs 44 and 51 admitted.)
    pub async fn group_in_arbitration(&self) -> (String, String, String) {
        use schemas::messages::{HandlingMode, Level, ProblemResult, UpTo};
        let first = crate::student("51", 1);
        let mut second = crate::student("44", 1);
        second.id_document = first.id_document.clone();
        second.name = first.name.clone();
        second.sex = first.sex;
        second.birth_date = first.birth_date;
        second.registered_at = first.registered_at.map(|t| t + chrono::Duration::days(7));
        let (a, b) = (first.school.to_string(), second.school.to_string());
        self.schools(&[(a.as_str(), "51", true, None), (b.as_str(), "44", true, None)]).await;
        self.index("51", vec![first.clone()]).await;
        let task_of = |sent: &Sent| {
            sent.replies
                .iter()
                .find_map(|e| match &e.body {
                    Body::ProblemTask(t) => Some(t.clone()),
                    _ => None,
                })
                .expect("a problem task")
        };
        let attest = |t: &schemas::messages::ProblemTask| {
            let mut photo = vec![0xFF, 0xD8, 0xFF, 0xE0];
            photo.resize(64, 0);
            Body::ProblemResult(ProblemResult {
                group_id: t.group_id,
                student_id: t.student_id.clone(),
                mode: HandlingMode::Attest,
                changed: None,
                approval: crate::approvals(&[Level::School, Level::Bureau]),
                evidence: UpTo::new(vec![schemas::messages::Attachment::new(
                    "证明.jpg".parse().expect("name"),
                    "image/jpeg".parse().expect("type"),
                    photo,
                )])
                .expect("one file"),
            })
        };
        let to_44 = task_of(&self.send_envelope(&crate::index_upsert("44", vec![second.clone()])).await);
        let to_51 = task_of(&self.send("44", attest(&to_44), None).await);
        let last = self.send("51", attest(&to_51), None).await;
        assert_eq!(last.refusal(), None, "{last:?}");
        (to_44.group_id.to_string(), first.student_id.to_string(), second.student_id.to_string())
    }

    /// A province reports students to the national index.
    pub async fn index(&self, province: &str, students: Vec<StudentSummary>) {
        let env = crate::index_upsert(province, students);
        let sent = self.send_envelope(&env).await;
        assert!(matches!(sent.replies[0].body, Body::IndexResult(ref r) if r.conflicting == 0), "{sent:?}");
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let (database, url) = (self.database.clone(), self.admin_url.clone());
        // Cleanup runs on a thread of its own: Drop may run inside a runtime. The pool's
        // connections belong to the test's runtime; dropping the database with FORCE ends them.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                if let Ok(admin) = sqlx::PgPool::connect(&url).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
                    )))
                    .execute(&admin)
                    .await;
                }
            });
        })
        .join();
    }
}
