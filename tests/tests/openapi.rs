//! The adapter's local API against its OpenAPI document: the document validates as OpenAPI
//! 3.1, and schemathesis, generating requests from it (valid and invalid) against a running
//! adapter, finds no response the document does not describe — no undocumented status, content
//! type or shape, and no server error.

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
            "--workers",
            "2",
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
