//! Every example under `schemas/examples/` and every message the code produces is validated
//! against `schemas/xsd/exchange.xsd` by `xmllint`, an independent validator, and the
//! examples must also be accepted by the Rust parser. A broken example fails this suite.

use std::path::PathBuf;
use std::process::Command;

use schemas::codec::{self, DEFAULT_MAX_BYTES};
use schemas::{ErrorCode, MessageType, samples};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn schema() -> PathBuf {
    crate_dir().join("xsd/exchange.xsd")
}

/// Runs xmllint on `files`; returns its combined output on failure.
fn xmllint(files: &[PathBuf]) -> Result<(), String> {
    let out = Command::new("xmllint")
        .args(["--noout", "--nonet", "--schema"])
        .arg(schema())
        .args(files)
        .output()
        .expect("xmllint must be installed (Debian package libxml2-utils; the test command provisions it)");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

fn examples() -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(crate_dir().join("examples"))
        .expect("schemas/examples exists")
        .map(|e| e.expect("readable directory").path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_is_valid_for_xmllint_and_the_parser() {
    let files = examples();
    assert!(!files.is_empty());
    xmllint(&files).unwrap_or_else(|e| panic!("xmllint refused an example:\n{e}"));
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        codec::from_xml(&bytes, DEFAULT_MAX_BYTES).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }
}

#[test]
fn every_message_type_has_an_example_named_after_it() {
    let names: Vec<String> = examples().iter().map(|p| p.file_stem().unwrap().to_string_lossy().into_owned()).collect();
    for t in MessageType::ALL {
        assert!(
            names.iter().any(|n| n == t.as_str() || n.starts_with(&format!("{}.", t.as_str()))),
            "no example for {t}"
        );
    }
    for f in examples() {
        let env = codec::from_xml(&std::fs::read(&f).unwrap(), DEFAULT_MAX_BYTES).unwrap();
        let stem = f.file_stem().unwrap().to_string_lossy().into_owned();
        assert!(stem.starts_with(env.message_type().as_str()), "{stem} holds a {}", env.message_type());
    }
}

#[test]
fn every_produced_message_is_valid_for_xmllint() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for &t in MessageType::ALL {
        let env = samples::envelope(t);
        for (suffix, xml) in [("compact", codec::to_xml(&env)), ("pretty", codec::to_xml_pretty(&env))] {
            let path = dir.path().join(format!("{t}.{suffix}.xml"));
            std::fs::write(&path, xml).unwrap();
            files.push(path);
        }
    }
    for (n, env) in samples::variants().into_iter().enumerate() {
        let path = dir.path().join(format!("variant-{n}.xml"));
        std::fs::write(&path, codec::to_xml(&env)).unwrap();
        files.push(path);
    }
    // Every error reply the codec can produce, too.
    for &code in ErrorCode::ALL {
        let report =
            codec::ParseError { code, detail: "细节 <detail> & \u{7} control".into(), message_id: None }.report();
        let mut env = samples::envelope(MessageType::Error);
        env.body = schemas::Body::Error(report);
        let path = dir.path().join(format!("error.{}.xml", code.code()));
        std::fs::write(&path, codec::to_xml(&env)).unwrap();
        files.push(path);
    }
    xmllint(&files).unwrap_or_else(|e| panic!("xmllint refused a produced message:\n{e}"));
}

#[test]
fn the_error_code_enumeration_matches_the_catalogue() {
    let xsd = std::fs::read_to_string(crate_dir().join("xsd/common.xsd")).unwrap();
    let start = xsd.find(r#"name="ErrorCodeType""#).unwrap();
    let end = start + xsd[start..].find("</xs:simpleType>").unwrap();
    let listed: Vec<&str> =
        xsd[start..end].split(r#"<xs:enumeration value=""#).skip(1).map(|s| s.split('"').next().unwrap()).collect();
    let catalogue: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.code()).collect();
    assert_eq!(listed, catalogue);
}

/// The validator really refuses what it should: a document that breaks the schema fails.
#[test]
fn xmllint_refuses_a_message_that_breaks_the_schema() {
    let env = samples::envelope(MessageType::LookupRequest);
    let xml = codec::to_xml(&env).replace("<name>李明</name>", "");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.xml");
    std::fs::write(&path, xml).unwrap();
    assert!(xmllint(&[path]).is_err());
}

/// The committed `schemas/examples/` are the samples' current XML. To regenerate them:
/// `UPDATE_EXAMPLES=1 cargo test -p schemas --test xsd committed_examples_match_the_samples`.
#[test]
fn committed_examples_match_the_samples() {
    let dir = crate_dir().join("examples");
    let update = std::env::var_os("UPDATE_EXAMPLES").is_some();
    for &t in MessageType::ALL {
        let path: PathBuf = dir.join(format!("{t}.xml"));
        let xml = codec::to_xml_pretty(&samples::envelope(t));
        if update {
            std::fs::write(&path, &xml).unwrap();
        } else {
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            let parsed = codec::from_xml(committed.as_bytes(), DEFAULT_MAX_BYTES);
            assert!(parsed.is_ok(), "{}: {:?}", path.display(), parsed.err());
            assert_eq!(parsed.unwrap(), samples::envelope(t), "{} differs from the sample", path.display());
        }
    }
}
