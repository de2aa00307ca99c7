//! The operator's side of a test world: a client of the hub's operator API with an
//! admitted certificate, and the school registry the institution-code system would load.

use std::time::Duration;

use certs::{Profile, Role};
use schemas::ids::ProvinceCode;

use crate::*;

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
                    department: Some(s.department.to_string()),
                    stages: vec![],
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

    /// POSTs a JSON body; returns the status and the body (status 0 when the hub did not
    /// answer, as [`Operator::get`]).
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        match self.client.post(format!("{}{path}", self.base)).json(body).send().await {
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
