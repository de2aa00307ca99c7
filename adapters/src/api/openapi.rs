//! The local API described as OpenAPI 3.1, served at `GET /openapi.json`. The schemas come
//! from the Rust types ([`super::views`], the wire model's envelope, the typed error), so the
//! description cannot drift from what the handlers answer; the suite runs schemathesis against
//! a running adapter to prove it.

use schemars::JsonSchema;
use schemars::generate::{Contract, SchemaGenerator, SchemaSettings};
use serde_json::{Value, json};

use super::views::*;
use schemas::codec::WireEnvelope;
use schemas::messages::ErrorReport;

/// A `$ref` to the component schema of `T` (registering it).
fn component<T: JsonSchema>(generator: &mut SchemaGenerator) -> Value {
    serde_json::to_value(generator.subschema_for::<T>()).expect("a schema is JSON")
}

fn json_content(schema: &Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

/// The typed error, for each of `statuses` with its meaning.
fn errors(error: &Value, statuses: &[(&str, &str)]) -> serde_json::Map<String, Value> {
    statuses
        .iter()
        .map(|(status, why)| ((*status).to_owned(), json!({ "description": why, "content": json_content(error) })))
        .collect()
}

fn responses(ok: Vec<(&str, Value)>, error: &Value, failures: &[(&str, &str)]) -> Value {
    let mut all: serde_json::Map<String, Value> = ok.into_iter().map(|(s, v)| (s.to_owned(), v)).collect();
    all.extend(errors(error, failures));
    // Every route can fail while the store is unreachable: the typed error, retry.
    all.entry("503")
        .or_insert_with(|| json!({ "description": "the store did not answer; retry", "content": json_content(error) }));
    Value::Object(all)
}

fn ok(description: &str, content: Value) -> Value {
    json!({ "description": description, "content": content })
}

fn query(name: &str, schema: Value, description: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "schema": schema, "description": description })
}

fn path_id(description: &str) -> Value {
    json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "string" }, "description": description })
}

/// The document.
pub fn document() -> Value {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas/".into();
    settings.meta_schema = None;
    settings.contract = Contract::Deserialize;
    let mut g = settings.into_generator();
    let error = component::<ErrorReport>(&mut g);
    let envelope = component::<WireEnvelope>(&mut g);
    let submission = component::<Submission>(&mut g);
    let status = component::<MessageStatus>(&mut g);
    let listed = component::<Vec<Listed>>(&mut g);
    let inbox_message = component::<InboxMessage>(&mut g);
    let ack = component::<AckRequest>(&mut g);
    let acknowledged = component::<Acknowledged>(&mut g);
    let readiness = component::<Readiness>(&mut g);
    let link_status = component::<Status>(&mut g);
    let text = json!({ "text/plain": { "schema": { "type": "string" } } });
    let xml =
        json!({ "application/xml": { "schema": { "type": "string", "description": "an envelope per envelope.xsd" } } });
    let bad_query = ("400", "a query parameter that does not parse");
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Xueji exchange adapter: the local API (省级适配器本地接口)",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "What a provincial system calls beside its adapter. Every refusal is the typed error \
                `{code, messageZh, messageEn, offendingMessageId, detail}`. Off loopback the API requires mutual TLS.",
        },
        "paths": {
            "/healthz": { "get": {
                "summary": "The process answers",
                "responses": { "200": ok("ok", text.clone()) },
            }},
            "/readyz": { "get": {
                "summary": "Ready when the broker link is up and the store answers (answers at once)",
                "responses": {
                    "200": ok("ready", json_content(&readiness)),
                    "503": ok("not ready: the parts that are not", json_content(&readiness)),
                },
            }},
            "/metrics": { "get": {
                "summary": "Prometheus metrics",
                "responses": { "200": ok("the exposition", text) },
            }},
            "/status": { "get": {
                "summary": "The link and the queues, as they are now",
                "responses": responses(vec![("200", ok("status", json_content(&link_status)))], &error, &[]),
            }},
            "/messages": { "post": {
                "summary": "Submit a message to the hub; answered once it is durably queued",
                "requestBody": { "required": true, "content": {
                    "application/json": { "schema": envelope },
                    "application/xml": xml["application/xml"],
                }},
                "responses": responses(
                    vec![
                        ("202", ok("queued", json_content(&submission))),
                        ("200", ok("the same message was queued before", json_content(&submission))),
                    ],
                    &error,
                    &[
                        ("400", "not a valid envelope (malformed, wrong schema or identifier): never queued"),
                        ("409", "the message id was used before for a different message"),
                        ("413", "larger than the configured limit"),
                        ("415", "neither application/xml nor application/json"),
                        ("422", "valid, but not this province's to send (another sender, a hub-to-province type)"),
                    ],
                ),
            }},
            "/messages/{id}": { "get": {
                "summary": "Where a submitted message stands, with the hub's reply",
                "parameters": [path_id("the message id")],
                "responses": responses(
                    vec![("200", ok("its state", json_content(&status)))],
                    &error,
                    &[("404", "no message with this id was submitted here")],
                ),
            }},
            "/inbox": { "get": {
                "summary": "Messages from the hub, oldest first",
                "parameters": [
                    query("after", json!({ "type": "integer", "format": "int64" }), "only entries after this seq"),
                    query("limit", json!({ "type": "integer", "format": "int64" }), "at most this many (1–1000, default 100)"),
                    query("pending", json!({ "type": "boolean" }), "only entries not yet acknowledged (default true)"),
                    query(
                        "body",
                        json!({ "type": "boolean" }),
                        &format!(
                            "include each message (XML); a page then holds at most {} MiB of messages (always its \
                             first entry), and the next one goes on after its last entry",
                            crate::store::LISTING_MAX_BYTES >> 20
                        ),
                    ),
                ],
                "responses": responses(vec![("200", ok("entries", json_content(&listed)))], &error, &[bad_query]),
            }},
            "/inbox/ack": { "post": {
                "summary": "The provincial system has taken these messages",
                "requestBody": { "required": true, "content": json_content(&ack) },
                "responses": responses(
                    vec![("200", ok("how many were found", json_content(&acknowledged)))],
                    &error,
                    &[
                        ("400", "not JSON"),
                        ("413", "larger than the configured limit"),
                        ("415", "not application/json"),
                        ("422", "JSON, but not {\"ids\": [...]}"),
                    ],
                ),
            }},
            "/inbox/{id}": { "get": {
                "summary": "One message from the hub: as received (XML), or as JSON",
                "parameters": [
                    path_id("the message id"),
                    query("format", json!({ "type": "string", "enum": ["xml", "json"] }), "xml (default) or json"),
                ],
                "responses": responses(
                    vec![("200", ok("the message", json!({
                        "application/xml": xml["application/xml"],
                        "application/json": { "schema": inbox_message },
                    })))],
                    &error,
                    &[bad_query, ("404", "no such inbox message"), ("422", "kept, but unreadable: no JSON form")],
                ),
            }},
            "/inbox/{id}/ack": { "post": {
                "summary": "The provincial system has taken this message",
                "parameters": [path_id("the message id")],
                "responses": responses(
                    vec![("204", json!({ "description": "acknowledged" }))],
                    &error,
                    &[("404", "no such inbox message")],
                ),
            }},
            "/openapi.json": { "get": {
                "summary": "This document",
                "responses": { "200": ok("OpenAPI 3.1", json!({ "application/json": { "schema": { "type": "object" } } })) },
            }},
        },
        "components": { "schemas": g.take_definitions(true) },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document is committed beside the XSDs for integrators; it must be the generated one.
    #[test]
    fn the_committed_document_is_the_generated_one() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
        let generated = format!("{:#}\n", document());
        if std::env::var_os("UPDATE_EXAMPLES").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(on_disk == generated, "{} is stale: run with UPDATE_EXAMPLES=1", path.display());
    }
}
