//! Hostile and broken input: each guard of the codec is observed refusing with its code.

use schemas::codec::{self, DEFAULT_MAX_BYTES};
use schemas::{ErrorCode, MessageType, samples};

fn valid() -> String {
    codec::to_xml(&samples::envelope(MessageType::LookupRequest))
}

fn refuse(doc: &str) -> schemas::ParseError {
    codec::from_xml(doc.as_bytes(), DEFAULT_MAX_BYTES).expect_err("must be refused")
}

#[test]
fn the_unmodified_document_is_accepted() {
    // Every test below changes this document; it must be fine to start with.
    assert!(codec::from_xml(valid().as_bytes(), DEFAULT_MAX_BYTES).is_ok());
}

#[test]
fn oversize_input_is_refused_before_parsing() {
    let doc = valid();
    let err = codec::from_xml(doc.as_bytes(), doc.len() - 1).unwrap_err();
    assert_eq!(err.code, ErrorCode::TooLarge);
    // Not even looked at: garbage of that size gets the same answer.
    let garbage = vec![0xffu8; 64];
    assert_eq!(codec::from_xml(&garbage, 63).unwrap_err().code, ErrorCode::TooLarge);
    assert!(codec::from_xml(doc.as_bytes(), doc.len()).is_ok());
}

#[test]
fn billion_laughs_is_refused_without_expansion() {
    let doc = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<envelope xmlns="urn:xueji:exchange:1"><schemaVersion>1.0</schemaVersion><messageId>&lol9;</messageId></envelope>"#;
    // Refused at the DOCTYPE, before any entity could be expanded.
    assert_eq!(refuse(doc).code, ErrorCode::DtdForbidden);
}

#[test]
fn external_entities_are_refused_and_nothing_is_fetched() {
    let doc = r#"<?xml version="1.0"?>
<!DOCTYPE envelope [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
<envelope xmlns="urn:xueji:exchange:1"><schemaVersion>1.0</schemaVersion><messageId>&xxe;</messageId></envelope>"#;
    let err = refuse(doc);
    assert_eq!(err.code, ErrorCode::DtdForbidden);
    assert!(!err.detail.contains("root:"), "file content must never appear: {}", err.detail);
}

#[test]
fn an_undeclared_entity_without_a_doctype_is_refused() {
    let doc = valid().replace("<name>李明</name>", "<name>&xxe;</name>");
    assert_eq!(refuse(&doc).code, ErrorCode::DtdForbidden);
}

#[test]
fn predefined_entities_and_character_references_are_fine() {
    let doc = valid().replace("<name>李明</name>", "<name>李&#26126;&amp;</name>");
    let env = codec::from_xml(doc.as_bytes(), DEFAULT_MAX_BYTES).unwrap();
    let schemas::Body::LookupRequest(req) = env.body else { panic!("lookup") };
    assert_eq!(req.name.as_ref(), "李明&");
}

#[test]
fn a_wrong_or_missing_namespace_is_refused() {
    let wrong = valid().replace("urn:xueji:exchange:1", "urn:xueji:exchange:2");
    assert_eq!(refuse(&wrong).code, ErrorCode::Namespace);
    let none = valid().replace(r#" xmlns="urn:xueji:exchange:1""#, "");
    assert_eq!(refuse(&none).code, ErrorCode::Namespace);
    // A prefixed root in the wrong namespace: serde alone would accept it by local name.
    let prefixed = valid()
        .replace(
            r#"<envelope xmlns="urn:xueji:exchange:1">"#,
            r#"<x:envelope xmlns:x="urn:WRONG" xmlns="urn:xueji:exchange:1">"#,
        )
        .replace("</envelope>", "</x:envelope>");
    assert_eq!(refuse(&prefixed).code, ErrorCode::Namespace);
    // A foreign element smuggled inside.
    let foreign = valid().replace("<name>", r#"<evil xmlns="urn:other">x</evil><name>"#);
    assert_eq!(refuse(&foreign).code, ErrorCode::Namespace);
}

#[test]
fn the_right_namespace_under_a_prefix_is_accepted() {
    let doc = valid()
        .replace(
            r#"<envelope xmlns="urn:xueji:exchange:1">"#,
            r#"<x:envelope xmlns:x="urn:xueji:exchange:1" xmlns="urn:xueji:exchange:1">"#,
        )
        .replace("</envelope>", "</x:envelope>");
    assert!(codec::from_xml(doc.as_bytes(), DEFAULT_MAX_BYTES).is_ok());
}

#[test]
fn a_wrong_schema_version_is_refused_with_the_message_id() {
    let env = samples::envelope(MessageType::LookupRequest);
    let doc = valid().replace("<schemaVersion>1.0</schemaVersion>", "<schemaVersion>2.0</schemaVersion>");
    let err = refuse(&doc);
    assert_eq!(err.code, ErrorCode::Version);
    assert_eq!(err.message_id, Some(env.message_id));
    // Even when the rest of the document is of a shape this build does not know.
    let future = doc.replace("<name>", "<futureField>1</futureField><name>");
    assert_eq!(refuse(&future).code, ErrorCode::Version);
}

#[test]
fn truncated_documents_are_refused() {
    let doc = valid();
    for cut in [doc.len() - 1, doc.len() - 12, doc.len() / 2, 60, 1] {
        let err = refuse(&doc[..cut]);
        assert!(matches!(err.code, ErrorCode::Malformed), "cut at {cut}: {err}");
    }
    assert_eq!(refuse("").code, ErrorCode::Malformed);
}

#[test]
fn other_structural_tricks_are_refused() {
    let doc = valid();
    let cases: Vec<(String, ErrorCode)> = vec![
        (doc.replace("<name>", r#"<name lang="zh">"#), ErrorCode::Schema),
        (doc.replace("<body>", "<?php evil ?><body>"), ErrorCode::Schema),
        (format!("{doc}<envelope/>"), ErrorCode::Malformed),
        (format!("{doc}trailing"), ErrorCode::Malformed),
        (doc.replace(r#"encoding="UTF-8""#, r#"encoding="GBK""#), ErrorCode::Malformed),
        (doc.replace("<name>李明</name>", "<name>李明</name><name>王五</name>"), ErrorCode::Schema),
        (doc.replace("<type>lookup.request</type>", "<type>lookup.nonsense</type>"), ErrorCode::Schema),
        (doc.replace("</body>", "</body><extra/>"), ErrorCode::Schema),
        (doc.replace("<body>", &format!("<body>{}", "<a>".repeat(40))), ErrorCode::Schema),
    ];
    for (bad, code) in cases {
        assert_eq!(refuse(&bad).code, code, "{bad}");
    }
    assert_eq!(codec::from_xml(&[0xff, 0xfe, 0x00], DEFAULT_MAX_BYTES).unwrap_err().code, ErrorCode::Malformed);
}

#[test]
fn invalid_identifiers_are_refused_with_the_offending_message_id() {
    let env = samples::envelope(MessageType::LookupRequest);
    let doc = valid().replace("G510104201605120358", "G510104201605120359");
    let err = refuse(&doc);
    assert_eq!(err.code, ErrorCode::Schema);
    assert!(err.detail.contains("校验码") && err.detail.contains("check digit"), "{}", err.detail);
    assert_eq!(err.message_id, Some(env.message_id));
    let report = err.report();
    assert_eq!(report.code, ErrorCode::Schema);
    assert_eq!(report.offending_message_id, Some(env.message_id));
    assert_eq!(report.message_zh, ErrorCode::Schema.zh());
}

#[test]
fn json_input_has_the_same_guards() {
    let env = samples::envelope(MessageType::LookupRequest);
    let json = codec::to_json(&env);
    assert_eq!(codec::from_json(json.as_bytes(), json.len() - 1).unwrap_err().code, ErrorCode::TooLarge);
    assert_eq!(
        codec::from_json(&json.as_bytes()[..json.len() - 3], DEFAULT_MAX_BYTES).unwrap_err().code,
        ErrorCode::Malformed
    );
    let v2 = json.replace(r#""schemaVersion":"1.0""#, r#""schemaVersion":"2.0""#);
    assert_eq!(codec::from_json(v2.as_bytes(), DEFAULT_MAX_BYTES).unwrap_err().code, ErrorCode::Version);
    let future = v2.replace(r#""messageId""#, r#""futureField":1,"messageId""#);
    let err = codec::from_json(future.as_bytes(), DEFAULT_MAX_BYTES).unwrap_err();
    assert_eq!((err.code, err.message_id), (ErrorCode::Version, Some(env.message_id)));
    let bad_id = json.replace("G510104201605120358", "G510104201605120359");
    assert_eq!(codec::from_json(bad_id.as_bytes(), DEFAULT_MAX_BYTES).unwrap_err().code, ErrorCode::Schema);
    let extra = json.replace(r#""schemaVersion""#, r#""extra":1,"schemaVersion""#);
    assert_eq!(codec::from_json(extra.as_bytes(), DEFAULT_MAX_BYTES).unwrap_err().code, ErrorCode::Schema);
}
