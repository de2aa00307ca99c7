//! The local API of the adapter and the operator API of the hub against their OpenAPI
//! documents: each document validates as OpenAPI 3.1, and schemathesis, generating requests
//! from it (valid and invalid) against the running service, finds no response the document does
//! not describe — no undocumented status, content type or shape, and no server error.

use std::process::Command;

use e2e::TestBed;

#[tokio::test(flavor = "multi_thread")]
async fn the_local_api_answers_only_what_its_openapi_document_describes() {
    let bed = TestBed::new().await;
    let a = bed.add_province("37").await;
    bed.spawn_hub("hub").await;
    let adapter = bed.spawn_adapter("adapter", &a, &[]).await;
    // Something in the inbox and the outbox, so that reads find entries too.
    let env = e2e::index_upsert("37", vec![e2e::student("37", 1)]);
    adapter.submit(&env).await;

    let doc: serde_json::Value = reqwest::get(adapter.url("/openapi.json")).await.unwrap().json().await.unwrap();
    assert_eq!(doc, adapters::api::openapi::document(), "served as generated");
    let file = bed.dir.path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    let py = &bed.env.py_bin;
    let valid = Command::new(py.join("openapi-spec-validator")).arg(&file).output().expect("openapi-spec-validator");
    assert!(
        valid.status.success(),
        "{}{}",
        String::from_utf8_lossy(&valid.stdout),
        String::from_utf8_lossy(&valid.stderr)
    );

    let report = bed.dir.path().join("schemathesis");
    let run = Command::new(py.join("schemathesis"))
        .arg("run")
        .arg(adapter.url("/openapi.json"))
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance",
            "--max-examples",
            "40",
            "--seed",
            "20261201",
            // One worker: with two threads, CPython 3.11's AST constructor (hypothesis parses
            // lambdas to describe them) can fail with "recursion depth mismatch".
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--generation-database",
            "none",
            "--no-color",
            "--report-dir",
        ])
        .arg(&report)
        .current_dir(bed.dir.path())
        .output()
        .expect("schemathesis");
    let out = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "schemathesis found what the document does not say:\n{out}");
    assert!(out.contains("/messages") && out.contains("/inbox"), "it tested the operations:\n{out}");
}

/// The hub's operator API against its OpenAPI document, with an operator's certificate: the
/// document validates as OpenAPI 3.1 and is served as generated, and schemathesis finds no
/// response the document does not describe and no server error — on a database with a case,
/// a dead letter and a province's link to list.
#[tokio::test(flavor = "multi_thread")]
async fn the_operator_api_answers_only_what_its_openapi_document_describes() {
    use certs::Role;
    use e2e::browser::{Console, staff};
    let hub = e2e::inprocess::Hub::new(&["37", "51"], "").await;
    hub.index("51", vec![e2e::student("51", 1)]).await;
    hub.send_envelope(&e2e::index_upsert("44", vec![e2e::student("44", 1)])).await;
    let console = Console::serve(&hub).await;
    let operator = staff(&hub, Role::Operator("schemathesis".into())).await;
    let dir = tempfile::tempdir().unwrap();
    operator.write(dir.path(), "operator").unwrap();
    std::fs::write(dir.path().join("ca.pem"), &console.ca_pem).unwrap();

    let client = console.client(&operator);
    let doc: serde_json::Value = client.get(console.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(doc, hub::api::ops::openapi::document(), "served as generated");
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    let py = &e2e::DevEnv::load().unwrap().py_bin;
    let valid = Command::new(py.join("openapi-spec-validator")).arg(&file).output().expect("openapi-spec-validator");
    assert!(
        valid.status.success(),
        "{}{}",
        String::from_utf8_lossy(&valid.stdout),
        String::from_utf8_lossy(&valid.stderr)
    );

    let run = tokio::task::spawn_blocking({
        let (py, file, base, dir) = (py.clone(), file.clone(), console.base.clone(), dir.path().to_owned());
        move || {
            Command::new(py.join("schemathesis"))
                .arg("run")
                .arg(&file)
                .args(["--url", &base])
                .arg("--request-cert")
                .arg(dir.join("operator.pem"))
                .arg("--request-cert-key")
                .arg(dir.join("operator.key"))
                .arg("--tls-verify")
                .arg(dir.join("ca.pem"))
                .args([
                    "--checks",
                    "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                    "--max-examples",
                    "25",
                    "--seed",
                    "20261202",
                    // One worker: see the adapter's run above.
                    "--workers",
                    "1",
                    "--request-timeout",
                    "10",
                    "--generation-database",
                    "none",
                    "--no-color",
                    "--report-dir",
                ])
                .arg(dir.join("report"))
                .current_dir(&dir)
                .output()
                .expect("schemathesis")
        }
    })
    .await
    .unwrap();
    let out = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "schemathesis found what the document does not say:\n{out}");
    assert!(out.contains("/ops/dead-letters") && out.contains("/cases"), "it tested the operations:\n{out}");
    println!("{out}");
}
