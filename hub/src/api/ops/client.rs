//! A client of the operator API, beside its routes: the `hub ops` command line and the tests
//! reach the API through it, by the same paths the router serves.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};
use uuid::Uuid;

use super::paths;
use crate::workflow::case::OperatorAction;

/// An authenticated client: the caller's certificate and key, the CA of the hub's server
/// certificate.
pub struct Client {
    http: reqwest::Client,
    base: String,
}

/// An answer: the HTTP status and the JSON body (the typed error body when refused).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: serde_json::Value,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl Client {
    /// # Errors
    /// Unreadable files or an invalid identity.
    pub fn new(base: &str, cert: &Path, key: &Path, ca: &Path) -> Result<Client> {
        let read = |p: &Path| std::fs::read(p).with_context(|| format!("Failed to read {}", p.display()));
        let mut identity = read(cert)?;
        identity.extend(read(key)?);
        let http = reqwest::Client::builder()
            .identity(reqwest::Identity::from_pem(&identity).context("the certificate and key")?)
            .add_root_certificate(reqwest::Certificate::from_pem(&read(ca)?).context("the CA certificate")?)
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Client { http, base: base.trim_end_matches('/').to_owned() })
    }

    async fn answer(&self, req: reqwest::RequestBuilder) -> Result<Answer> {
        let response = req.send().await.with_context(|| format!("The operator API at {} is unreachable", self.base))?;
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or_default();
        Ok(Answer { status, body })
    }

    /// GETs a path (with its query).
    ///
    /// # Errors
    /// The API is unreachable.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Answer> {
        self.answer(self.http.get(format!("{}{path}", self.base)).query(query)).await
    }

    /// One case in full.
    ///
    /// # Errors
    /// The API is unreachable.
    pub async fn case(&self, id: &str) -> Result<Answer> {
        self.get(&paths::case(id), &[]).await
    }

    /// An operator's action on a case, with the note for the audit trail.
    ///
    /// # Errors
    /// The API is unreachable.
    pub async fn act(&self, case: Uuid, action: OperatorAction, note: &str) -> Result<Answer> {
        let url = format!("{}{}", self.base, paths::action(&case.to_string(), action));
        self.answer(self.http.post(url).json(&serde_json::json!({ "note": note }))).await
    }

    /// POSTs a JSON body to a path.
    ///
    /// # Errors
    /// The API is unreachable.
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> Result<Answer> {
        self.answer(self.http.post(format!("{}{path}", self.base)).json(body)).await
    }
}
