//! The operator API described as OpenAPI 3.1, served at `GET /openapi.json` on the operator
//! listener. The response schemas come from the Rust types the routes serialize, so the
//! description cannot drift from what they answer; the suite runs schemathesis with an
//! operator's certificate against the served document to prove it. The console's pages call
//! these same routes for every action.

use schemars::JsonSchema;
use schemars::generate::{Contract, SchemaGenerator, SchemaSettings};
use serde_json::{Value, json};

use super::dead_letters::{Inspected, Outcome};
use super::links::LinkHealth;
use crate::store::{cases, dead_letters, links, orgcodes, problems, trace};
use crate::workflow::case::OperatorAction;
use schemas::messages::ErrorReport;

fn component<T: JsonSchema>(g: &mut SchemaGenerator) -> Value {
    serde_json::to_value(g.subschema_for::<T>()).expect("a schema is JSON")
}

fn json_content(schema: &Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

fn ok(description: &str, schema: &Value) -> Value {
    json!({ "description": description, "content": json_content(schema) })
}

/// The statuses every route can answer besides its own, with the typed error.
const ALWAYS: &[(&str, &str)] = &[
    ("401", "no client certificate (the TLS listener asks for one; this answers a request without)"),
    ("403", "the certificate is not registered, revoked, expired, or of a role this route does not admit"),
    ("503", "the hub could not complete the request; retry"),
];

/// Statuses of a route that takes a JSON body.
const BODY: &[(&str, &str)] = &[
    ("400", "the body is not JSON, or a value does not parse"),
    ("413", "the body is larger than the listener's limit"),
    ("415", "the body is not application/json"),
    ("422", "JSON of the wrong shape"),
];

fn responses(ok: Vec<(&str, Value)>, error: &Value, own: &[(&str, &str)]) -> Value {
    let mut all: serde_json::Map<String, Value> = ok.into_iter().map(|(s, v)| (s.to_owned(), v)).collect();
    for (status, why) in own.iter().chain(ALWAYS) {
        all.entry((*status).to_owned())
            .or_insert_with(|| json!({ "description": why, "content": json_content(error) }));
    }
    Value::Object(all)
}

fn query(name: &str, schema: Value, description: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "schema": schema, "description": description })
}

fn path(name: &str, schema: Value, description: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "schema": schema, "description": description })
}

fn uuid() -> Value {
    json!({ "type": "string", "format": "uuid" })
}

fn int() -> Value {
    json!({ "type": "integer", "format": "int64" })
}

fn text() -> Value {
    json!({ "type": "string" })
}

fn paging() -> [Value; 2] {
    [query("limit", int(), "at most this many (1–10 000, default 100)"), query("offset", int(), "skip this many")]
}

fn array(of: &Value) -> Value {
    json!({ "type": "array", "items": of })
}

fn object() -> Value {
    json!({ "type": "object" })
}

/// The document.
pub fn document() -> Value {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas/".into();
    settings.meta_schema = None;
    settings.contract = Contract::Serialize;
    let mut g = settings.into_generator();
    let error = component::<ErrorReport>(&mut g);
    let summary = component::<cases::Summary>(&mut g);
    let audit = component::<cases::AuditEntry>(&mut g);
    let letter = component::<dead_letters::Listed>(&mut g);
    let inspected = component::<Inspected>(&mut g);
    let outcome = component::<Outcome>(&mut g);
    let link = component::<LinkHealth>(&mut g);
    let _ = component::<links::Link>(&mut g);
    let traced = component::<trace::Traced>(&mut g);
    let group = component::<problems::Row>(&mut g);
    let batch = component::<orgcodes::BatchView>(&mut g);
    let looked_up = component::<crate::store::lookups::Entry>(&mut g);
    let states: Vec<&str> = schemas::messages::CaseState::ALL.iter().map(|s| s.as_str()).collect();
    let actions: Vec<&str> = OperatorAction::ALL.iter().map(|a| a.as_str()).collect();
    let note = json!({ "type": "object", "properties": { "note": { "type": "string", "description": "why, for the audit trail" } } });
    let selection = json!({
        "type": "object", "required": ["ids"],
        "properties": {
            "ids": { "type": "array", "items": int(), "minItems": 1, "maxItems": super::dead_letters::SELECTION_MAX },
            "note": { "type": "string" },
        },
    });
    let decision = json!({
        "type": "object", "required": ["upheld"],
        "properties": {
            "upheld": { "type": "string", "description": "the national student ID of the record upheld (仲裁通过)" },
            "comments": { "type": "array", "items": { "type": "object", "required": ["studentId", "comment"],
                "properties": { "studentId": { "type": "string" }, "comment": { "type": "string" } } } },
        },
    });
    let acted = json!({ "type": "object", "required": ["auditId"], "properties": { "auditId": int() } });
    let loaded = json!({ "type": "object", "properties": { "groupId": uuid(), "auditId": int() } });
    let not_found = |what: &str| ("404", format!("no such {what}"));
    let nf_case = not_found("case");
    let nf_letter = not_found("dead letter");
    let nf_group = not_found("problem group");
    let body_json = |schema: &Value| json!({ "required": true, "content": json_content(schema) });
    let with = |own: &[(&str, &str)], extra: &[(&str, &str)]| -> Vec<(String, String)> {
        own.iter().chain(extra).map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
    };
    let r = |ok_: Vec<(&str, Value)>, own: Vec<(String, String)>| {
        let own: Vec<(&str, &str)> = own.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        responses(ok_, &error, &own)
    };
    let bad_query = ("400", "a query parameter that does not parse");
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Xueji exchange hub: the operator API (运维与国家平台接口)",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "For operators and the national office, over HTTPS with a client certificate the exchange CA \
                issued and the hub registered. Every refusal is the typed error `{code, messageZh, messageEn, detail}`. \
                Routes marked national-office refuse operators with 403. Times are UTC (RFC 3339); deadlines are \
                business dates (China Standard Time).",
        },
        "components": {
            "securitySchemes": { "clientCertificate": { "type": "mutualTLS" } },
            "schemas": g.take_definitions(true),
        },
        "security": [{ "clientCertificate": [] }],
        "paths": {
            "/cases": { "get": {
                "summary": "Search cases, newest first",
                "parameters": [
                    query("business", json!({ "type": "string", "enum": ["TRANSFER", "ENROLLMENT"] }), "the business"),
                    query("student", text(), "national student ID"),
                    query("school", text(), "school identification code (either side)"),
                    query("province", text(), "province code (either side)"),
                    query("state", json!({ "type": "string", "enum": states }), "case state"),
                    query("waiting_on", text(), "who must act, e.g. prov-37"),
                    query("open", json!({ "type": "boolean" }), "only open (true) or closed (false) cases"),
                    paging()[0], paging()[1],
                ],
                "responses": r(vec![("200", ok("cases", &array(&summary)))], with(&[bad_query], &[])),
            }},
            "/cases/{id}": { "get": {
                "summary": "One case with its full history: facts, decisions, stage changes, operators' actions, messages",
                "parameters": [path("id", uuid(), "the case id")],
                "responses": r(vec![("200", ok("the case", &object()))], with(&[("400", "not a UUID"), (nf_case.0, &nf_case.1)], &[])),
            }},
            "/ops/cases/{id}/{action}": { "post": {
                "summary": "An operator's action on a case, audited: resend, rerequest or resolve",
                "parameters": [path("id", uuid(), "the case id"), path("action", json!({ "type": "string", "enum": actions }), "what to do")],
                "requestBody": { "required": false, "content": json_content(&note) },
                "responses": r(vec![("200", ok("done; its audit entry", &acted))],
                    with(BODY, &[(nf_case.0, &nf_case.1), ("409", "not possible in the case's stage")])),
            }},
            "/ops/stuck": { "get": {
                "summary": "Machine-driven stages that have not moved (verification, release, the archive hand-over)",
                "responses": r(vec![("200", ok("stuck cases", &array(&json!({ "type": "object",
                    "properties": { "case": summary, "waitingSeconds": int() } }))))], vec![]),
            }},
            "/ops/overdue": { "get": {
                "summary": "Review steps past their deadline (working days)",
                "responses": r(vec![("200", ok("overdue cases", &array(&summary)))], vec![]),
            }},
            "/ops/audit": { "get": {
                "summary": "The audit trail, newest first",
                "parameters": [query("case", uuid(), "only this case's (or group's)"), paging()[0], paging()[1]],
                "responses": r(vec![("200", ok("entries", &array(&audit)))], with(&[bad_query], &[])),
            }},
            "/ops/dead-letters": { "get": {
                "summary": "Dead letters, newest first (without their bodies)",
                "parameters": [query("state", json!({ "type": "string", "enum": ["open", "replayed", "discarded"] }), "only these"), paging()[0], paging()[1]],
                "responses": r(vec![("200", ok("dead letters", &array(&letter)))], with(&[bad_query], &[])),
            }},
            "/ops/dead-letters/replay": { "post": {
                "summary": "Replays a selection, each on its own; answers what became of each",
                "requestBody": body_json(&selection),
                "responses": r(vec![("200", ok("one outcome per id, in order", &array(&outcome)))], with(BODY, &[])),
            }},
            "/ops/dead-letters/{id}": { "get": {
                "summary": "One dead letter with its message as kept",
                "parameters": [path("id", int(), "the dead letter's number")],
                "responses": r(vec![("200", ok("the dead letter", &inspected))], with(&[("400", "not a number"), (nf_letter.0, &nf_letter.1)], &[])),
            }},
            "/ops/dead-letters/{id}/replay": { "post": {
                "summary": "Replays a dead letter after its cause was fixed: processed exactly once, audited",
                "parameters": [path("id", int(), "the dead letter's number")],
                "requestBody": { "required": false, "content": json_content(&note) },
                "responses": r(vec![("200", ok("replayed", &outcome))], with(&[("400", "not a number, or the body not {\"note\": …}"), (nf_letter.0, &nf_letter.1),
                    ("409", "already settled, not replayable, or poison still (its code); the attempt is audited")], &[])),
            }},
            "/ops/dead-letters/{id}/discard": { "post": {
                "summary": "Discards a dead letter: kept for the record, never replayed; audited",
                "parameters": [path("id", int(), "the dead letter's number")],
                "requestBody": { "required": false, "content": json_content(&note) },
                "responses": r(vec![("200", ok("discarded", &outcome))], with(&[("400", "not a number, or the body not {\"note\": …}"), (nf_letter.0, &nf_letter.1),
                    ("409", "already settled")], &[])),
            }},
            "/ops/index-disputes": { "get": {
                "summary": "Index entries their province contradicted, waiting to be reported again",
                "responses": r(vec![("200", ok("disputes", &array(&object())))], vec![]),
            }},
            "/ops/links": { "get": {
                "summary": "Each province's link: connected, last message, queue depth, outbox backlog, certificate days left",
                "responses": r(vec![("200", ok("links, by province", &array(&link)))], vec![]),
            }},
            "/ops/lookups": { "get": {
                "summary": "National office: the lookup audit (查询审计) — who looked up whom, when, and what was answered — newest first",
                "parameters": [
                    query("province", text(), "the province that looked up"),
                    query("student", text(), "a national student ID or ID-document number: the lookups made with it and those that found him"),
                    query("since", text(), "RFC 3339"),
                    query("limit", int(), "at most 1,000 (default 100)"),
                ],
                "responses": r(vec![("200", ok("entries", &array(&looked_up)))], with(&[bad_query], &[])),
            }},
            "/messages/{id}": { "get": {
                "summary": "A message by its id, both ways",
                "parameters": [path("id", uuid(), "the message id")],
                "responses": r(vec![("200", ok("its trace", &array(&traced)))], with(&[("400", "not a UUID"), ("404", "not in the trace")], &[])),
            }},
            "/problems": {
                "get": {
                    "summary": "Problem groups (问题学籍组), longest waiting first",
                    "parameters": [
                        query("province", text(), "groups with a record of this province"),
                        query("kind", text(), "ID_DUPLICATE, NAME_SEX_BIRTH_DUPLICATE, …"),
                        query("state", json!({ "type": "string", "enum": ["open", "arbitration", "closed"] }), "state"),
                        query("waiting_on", text(), "a province code, or national-office"),
                        paging()[0], paging()[1],
                    ],
                    "responses": r(vec![("200", ok("groups", &array(&group)))], with(&[bad_query], &[])),
                },
                "post": {
                    "summary": "National office: loads a legacy group",
                    "requestBody": body_json(&object()),
                    "responses": r(vec![("201", ok("the group opened", &loaded))], with(BODY, &[("409", "refused by the rules (its code)")])),
                },
            },
            "/problems/{id}": { "get": {
                "summary": "One problem group: its records, whom it waits on, its whole history",
                "parameters": [path("id", uuid(), "the group id")],
                "responses": r(vec![("200", ok("the group", &object()))], with(&[("400", "not a UUID"), (nf_group.0, &nf_group.1)], &[])),
            }},
            "/problems/{id}/evidence/{sha256}": { "get": {
                "summary": "National office: one evidence file of a group, as the province sent it",
                "parameters": [path("id", uuid(), "the group id"), path("sha256", text(), "the file's SHA-256 (hex)")],
                "responses": r(vec![("200", json!({ "description": "the file", "content": { "*/*": { "schema": { "type": "string", "format": "binary" } } } }))],
                    with(&[("400", "not a UUID"), ("404", "no such file in the group")], &[])),
            }},
            "/problems/{id}/bundle": { "get": {
                "summary": "National office: the group's evidence bundle from the message log (报文日志证据包), audited: \
                    one tar holding every message about the group with its bytes and signature, the chain, the signers' \
                    certificates, the hub's signed checkpoint, and verify.sh (tar -xf, then sh problem-<id>/verify.sh)",
                "parameters": [path("id", uuid(), "the group id")],
                "responses": r(vec![("200", json!({ "description": "the bundle (POSIX tar)", "content": { "application/x-tar": { "schema": { "type": "string", "format": "binary" } } } }))],
                    with(&[("400", "not a UUID"), (nf_group.0, &nf_group.1)], &[])),
            }},
            "/problems/{id}/decision": { "post": {
                "summary": "National office: the arbitration decision (仲裁), audited",
                "parameters": [path("id", uuid(), "the group id")],
                "requestBody": body_json(&decision),
                "responses": r(vec![("200", ok("decided", &loaded))], with(BODY, &[(nf_group.0, &nf_group.1), ("409", "not waiting for arbitration, or not one of its records")])),
            }},
            "/arbitrations": { "get": {
                "summary": "Groups waiting for the national office, oldest first",
                "responses": r(vec![("200", ok("the queue", &array(&json!({ "type": "object",
                    "properties": { "group": group, "waitingSeconds": int() } }))))], vec![]),
            }},
            "/orgcodes/batches": {
                "get": {
                    "summary": "Organization-code batches, newest first, with each province's progress",
                    "parameters": [query("limit", int(), "at most this many (1–1000, default 100)"), query("offset", int(), "skip this many")],
                    "responses": r(vec![("200", ok("batches", &array(&batch)))], with(&[bad_query], &[])),
                },
                "post": {
                    "summary": "National office: loads a batch of organization-code changes",
                    "requestBody": body_json(&object()),
                    "responses": r(vec![("200", ok("loaded", &object())), ("201", ok("loaded", &object()))],
                        with(BODY, &[("409", "this batch id and version were loaded with other content")])),
                },
            },
            "/orgcodes/batches/{id}": { "get": {
                "summary": "One batch's records, by province and sequence",
                "parameters": [path("id", text(), "the batch id")],
                "responses": r(vec![("200", ok("records", &array(&object())))], with(&[("404", "no such batch")], &[])),
            }},
            "/orgcodes/revocations": { "get": {
                "summary": "Confirmed revocations waiting for open business to end, with their blockers",
                "responses": r(vec![("200", ok("waiting", &array(&object())))], vec![]),
            }},
            "/orgcodes/changes/{id}": { "get": {
                "summary": "One change record: where it stands, its history, what blocks it",
                "parameters": [path("id", uuid(), "the change id")],
                "responses": r(vec![("200", ok("the change", &object()))], with(&[("400", "not a UUID"), ("404", "no such change")], &[])),
            }},
            "/openapi.json": { "get": {
                "summary": "This document",
                "responses": r(vec![("200", ok("OpenAPI 3.1", &object()))], vec![]),
            }},
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document is committed for integrators and operators' tooling; it must be the
    /// generated one.
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
