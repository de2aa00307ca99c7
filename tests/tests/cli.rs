//! The command-line tools as their users run them.

use std::process::Command;

use e2e::binary;

#[test]
fn demo_help_prints_its_options_instead_of_running() {
    let out = Command::new(binary("demo")).arg("--help").output().expect("run the demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("Usage") && text.contains("--transfers"), "{text}");
    assert!(!text.contains("Setting up"), "it must not start the demo: {text}");
}
