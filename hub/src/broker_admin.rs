//! The broker's management API: users, permissions, vhosts, connections. Used to admit and
//! confine provinces and to cut off a revoked one; never on the message path.

use anyhow::{Context, Result, bail};
use reqwest::{Client, Method, StatusCode};
use serde::Deserialize;

use crate::config::BrokerAdmin;

/// A client of the management API.
pub struct Admin {
    client: Client,
    base: url::Url,
    user: String,
    password: crate::config::Secret,
}

/// Permission patterns on one vhost (regular expressions over resource names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    pub configure: String,
    pub write: String,
    pub read: String,
}

#[derive(Debug, Deserialize)]
struct ConnectionInfo {
    name: String,
    user: String,
}

fn segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>().replace('+', "%20")
}

impl Admin {
    /// # Errors
    /// A malformed URL or a missing password.
    pub fn new(cfg: &BrokerAdmin) -> Result<Admin> {
        Ok(Admin {
            client: Client::builder().timeout(std::time::Duration::from_secs(15)).build()?,
            base: url::Url::parse(&format!("{}/", cfg.url.trim_end_matches('/'))).context("broker.admin.url")?,
            user: cfg.user.clone(),
            password: cfg.password()?,
        })
    }

    async fn call(&self, method: Method, path: &str, body: Option<serde_json::Value>) -> Result<reqwest::Response> {
        let url = format!("{}api/{path}", self.base);
        let mut req = self.client.request(method.clone(), &url).basic_auth(&self.user, Some(self.password.expose()));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.with_context(|| format!("Management API {method} {path} unreachable"))?;
        Ok(resp)
    }

    async fn expect_ok(&self, method: Method, path: &str, body: Option<serde_json::Value>) -> Result<()> {
        let resp = self.call(method.clone(), path, body).await?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            bail!("Management API {method} {path}: {status} {text}");
        }
        Ok(())
    }

    /// Whether the management API takes the configured user and password.
    ///
    /// # Errors
    /// Unreachable, or the login refused (with the status).
    pub async fn whoami(&self) -> Result<()> {
        self.expect_ok(Method::GET, "whoami", None).await
    }

    /// # Errors
    /// When the API refuses.
    pub async fn ensure_vhost(&self, vhost: &str) -> Result<()> {
        self.expect_ok(Method::PUT, &format!("vhosts/{}", segment(vhost)), None).await
    }

    /// Deletes a vhost and everything in it; an absent vhost is fine.
    ///
    /// # Errors
    /// When the API refuses.
    pub async fn delete_vhost(&self, vhost: &str) -> Result<()> {
        let resp = self.call(Method::DELETE, &format!("vhosts/{}", segment(vhost)), None).await?;
        if resp.status().is_success() || resp.status() == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            bail!("Management API: deleting vhost {vhost}: {}", resp.status())
        }
    }

    /// The AMQP connections on a vhost: who the broker authenticated, and how.
    ///
    /// # Errors
    /// When the API refuses.
    pub async fn connections(&self, vhost: &str) -> Result<Vec<serde_json::Value>> {
        let resp = self.call(Method::GET, &format!("vhosts/{}/connections", segment(vhost)), None).await?;
        if !resp.status().is_success() {
            bail!("Management API: listing connections: {}", resp.status());
        }
        Ok(resp.json().await?)
    }

    /// The queues of a vhost: name, messages ready and unacknowledged, consumers.
    ///
    /// # Errors
    /// When the API refuses.
    pub async fn queues(&self, vhost: &str) -> Result<Vec<serde_json::Value>> {
        let path = format!("queues/{}?columns=name,messages,consumers", segment(vhost));
        let resp = self.call(Method::GET, &path, None).await?;
        if !resp.status().is_success() {
            bail!("Management API: listing queues: {}", resp.status());
        }
        Ok(resp.json().await?)
    }

    /// Creates (or keeps) a user that has no password: it can only log in with EXTERNAL, that is
    /// with a certificate whose CN is its name.
    ///
    /// # Errors
    /// When the API refuses.
    pub async fn ensure_certificate_user(&self, name: &str) -> Result<()> {
        let body = serde_json::json!({ "password_hash": "", "tags": "" });
        self.expect_ok(Method::PUT, &format!("users/{}", segment(name)), Some(body)).await
    }

    /// # Errors
    /// When the API refuses.
    pub async fn set_permissions(&self, vhost: &str, user: &str, p: &Permissions) -> Result<()> {
        let body = serde_json::json!({ "configure": p.configure, "write": p.write, "read": p.read });
        self.expect_ok(Method::PUT, &format!("permissions/{}/{}", segment(vhost), segment(user)), Some(body)).await
    }

    /// Removes a user's access to a vhost; absent permissions are fine.
    ///
    /// # Errors
    /// When the API refuses.
    pub async fn clear_permissions(&self, vhost: &str, user: &str) -> Result<()> {
        let resp =
            self.call(Method::DELETE, &format!("permissions/{}/{}", segment(vhost), segment(user)), None).await?;
        if resp.status().is_success() || resp.status() == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            bail!("Management API: clearing permissions of {user}: {}", resp.status())
        }
    }

    /// Closes every connection `user` holds on `vhost`; returns how many.
    ///
    /// # Errors
    /// When the API refuses.
    pub async fn close_connections(&self, vhost: &str, user: &str, reason: &str) -> Result<usize> {
        let resp = self.call(Method::GET, &format!("vhosts/{}/connections", segment(vhost)), None).await?;
        if !resp.status().is_success() {
            bail!("Management API: listing connections: {}", resp.status());
        }
        let conns: Vec<ConnectionInfo> = resp.json().await?;
        let mut closed = 0;
        for c in conns.into_iter().filter(|c| c.user == user) {
            let resp = self
                .client
                .delete(format!("{}api/connections/{}", self.base, segment(&c.name)))
                .basic_auth(&self.user, Some(self.password.expose()))
                .header("X-Reason", reason)
                .send()
                .await?;
            if resp.status().is_success() || resp.status() == StatusCode::NOT_FOUND {
                closed += 1;
            }
        }
        Ok(closed)
    }
}
