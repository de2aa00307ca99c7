//! The JSON Schema of the envelope's JSON form, generated from the types: committed, and it
//! accepts every message the exchange produces and refuses what the parser refuses.

use std::path::PathBuf;

use schemas::{MessageType, codec, samples};

fn committed() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("json/envelope.schema.json")
}

#[test]
fn the_committed_schema_is_the_generated_one() {
    let generated = format!("{:#}\n", codec::envelope_json_schema());
    if std::env::var_os("UPDATE_EXAMPLES").is_some() {
        std::fs::write(committed(), &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(committed()).unwrap_or_default();
    assert!(on_disk == generated, "{} is stale: run with UPDATE_EXAMPLES=1", committed().display());
}

#[test]
fn every_message_the_exchange_produces_is_valid_for_the_schema() {
    let validator = jsonschema::validator_for(&codec::envelope_json_schema()).expect("a valid JSON Schema");
    for &t in MessageType::ALL {
        let json: serde_json::Value = serde_json::from_str(&codec::to_json(&samples::envelope(t))).unwrap();
        let errors: Vec<String> =
            validator.iter_errors(&json).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{t}: {errors:#?}");
    }
}

#[test]
fn the_schema_refuses_what_the_parser_refuses() {
    let validator = jsonschema::validator_for(&codec::envelope_json_schema()).unwrap();
    let good: serde_json::Value =
        serde_json::from_str(&codec::to_json(&samples::envelope(MessageType::TransferApply))).unwrap();
    let broken = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut v = good.clone();
        edit(&mut v);
        v
    };
    let cases = [
        ("an unknown field", broken(&|v| v["extra"] = 1.into())),
        ("another schema version", broken(&|v| v["schemaVersion"] = "2.0".into())),
        ("an unknown type", broken(&|v| v["type"] = "transfer.steal".into())),
        ("two bodies", broken(&|v| v["body"]["caseCancel"] = serde_json::json!({ "reason": "x" }))),
        ("no sender", broken(&|v| _ = v.as_object_mut().unwrap().remove("sender"))),
    ];
    for (what, v) in cases {
        assert!(!validator.is_valid(&v), "{what}");
        assert!(
            codec::from_json(v.to_string().as_bytes(), schemas::DEFAULT_MAX_BYTES).is_err(),
            "{what}: the parser too"
        );
    }
}
