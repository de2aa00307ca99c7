//! Preflight: `hub check` and `adapter check` name each broken set-up with its fix, pass on a
//! good one, and `run` stops with the reason instead of retrying for ever when waiting cannot
//! help — against the real broker and database.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use certs::{Profile, Role};
use e2e::{Creds, TestBed, binary};

const WAIT: Duration = Duration::from_secs(60);

fn run(program: &str, args: &[&OsArg]) -> Output {
    let mut cmd = Command::new(binary(program));
    for a in args {
        cmd.arg(a.as_os());
    }
    cmd.output().expect("run")
}

/// A command-line argument: text or a path.
enum OsArg<'a> {
    S(&'a str),
    P(&'a Path),
}

impl OsArg<'_> {
    fn as_os(&self) -> &std::ffi::OsStr {
        match self {
            OsArg::S(s) => s.as_ref(),
            OsArg::P(p) => p.as_os_str(),
        }
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// `hub check` on `settings`: (exit code, output).
fn hub_check(settings: &Path) -> (i32, String) {
    let out = run("hub", &[&OsArg::S("--config"), &OsArg::P(settings), &OsArg::S("check")]);
    (out.status.code().unwrap_or(-1), text(&out))
}

fn adapter_check(config: &Path) -> (i32, String) {
    let out = run("adapter", &[&OsArg::S("check"), &OsArg::S("--config"), &OsArg::P(config)]);
    (out.status.code().unwrap_or(-1), text(&out))
}

/// A copy of `path` with `from` replaced by `to` (which must occur).
fn edited(path: &Path, name: &str, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from} not in {}", path.display());
    let out = path.with_file_name(name);
    std::fs::write(&out, text.replace(from, to)).unwrap();
    out
}

fn other_key(bed: &TestBed, role: Role, stem: &str) -> Creds {
    bed.issue(&Profile::new(role, 30), stem)
}

#[tokio::test(flavor = "multi_thread")]
async fn hub_check_names_each_broken_set_up_and_passes_a_good_one() {
    let bed = TestBed::new().await;
    let good = &bed.settings_path;
    let (code, out) = hub_check(good);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ready") && out.contains("TLS and EXTERNAL login as hub") && !out.contains("FAIL"), "{out}");

    let hub_key = bed.env.hub_key.display().to_string();
    let hub_cert = bed.env.hub_cert.display().to_string();
    let stranger = other_key(&bed, Role::Hub, "another-hub");
    let province = bed.add_province("37").await;
    let calendar = bed.dir.path().join("calendar.toml");
    std::fs::write(&calendar, "holidays = [\"2026-13-01\"]\nworkdays = []\n").unwrap();
    let cases: Vec<(&str, PathBuf, &str)> = vec![
        (
            "a key that is not the certificate's",
            edited(good, "key.toml", &hub_key, &stranger.key.display().to_string()),
            "is not the key of broker.cert",
        ),
        (
            "a province's certificate given to the hub",
            edited(
                &edited(good, "tmp.toml", &hub_cert, &province.cert.display().to_string()),
                "role.toml",
                &hub_key,
                &province.key.display().to_string(),
            ),
            "needs the hub's",
        ),
        (
            "a database that does not exist",
            edited(good, "db.toml", &format!("/{}\"", bed.id), "/no_such_database\""),
            "database does not exist",
        ),
        (
            "a vhost that does not exist",
            edited(good, "vhost.toml", &format!("vhost = \"{}\"", bed.id), "vhost = \"nope\""),
            "vhost nope",
        ),
        (
            "a calendar that does not parse",
            edited(
                good,
                "cal.toml",
                "[limits]",
                &format!("[cases]\ncalendar = \"{}\"\n\n[limits]", calendar.display()),
            ),
            "rules",
        ),
    ];
    for (what, settings, named) in &cases {
        let (code, out) = hub_check(settings);
        assert_eq!(code, 1, "{what}: {out}");
        assert!(out.contains("FAIL") && out.contains(named) && out.contains("fix:"), "{what}: {out}");
    }
    // Offline, the database and the broker are not asked.
    let offline =
        run("hub", &[&OsArg::S("--config"), &OsArg::P(&cases[3].1), &OsArg::S("check"), &OsArg::S("--offline")]);
    assert_eq!(offline.status.code(), Some(0), "{}", text(&offline));

    // `hub run` stops with the reason rather than retrying for ever: the key, the database,
    // the vhost.
    for (n, (what, settings, named)) in [&cases[0], &cases[2], &cases[3]].into_iter().enumerate() {
        let name = format!("run-{n}");
        bed.start_hub(&name, settings, &[]);
        let status = bed.wait_exit(&name, WAIT).await;
        assert_eq!(status.code(), Some(1), "{what}");
        let log = bed.log(&name);
        assert!(log.contains("not starting") && log.contains(named), "{what}: {log}");
        assert_eq!(log.matches("not starting").count(), 1, "said once: {log}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn adapter_check_names_each_broken_set_up_and_run_stops_on_a_refused_certificate() {
    let bed = TestBed::new().await;
    let admitted = bed.add_province("37").await;
    let good = bed.adapter_config("good", &admitted).config;
    let (code, out) = adapter_check(&good);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("TLS and EXTERNAL login as prov-37") && !out.contains("FAIL"), "{out}");

    // No test admits province 65, so its broker user never exists and the refusal is always
    // the login's, whatever other tests run beside this one.
    let p65 = "65".parse().unwrap();
    let unadmitted = other_key(&bed, Role::Province(p65), "prov-65-unadmitted");
    let stranger = other_key(&bed, Role::Province("37".parse().unwrap()), "prov-37-other");
    let cases: Vec<(&str, PathBuf, &str)> = vec![
        (
            "a key that is not the certificate's",
            edited(&good, "key.toml", &admitted.key.display().to_string(), &stranger.key.display().to_string()),
            "is not the key of broker.cert",
        ),
        (
            "a certificate the broker has not admitted",
            bed.adapter_config("unadmitted", &unadmitted).config,
            "refused the login of prov-65",
        ),
        (
            "a vhost that does not exist",
            edited(&good, "vhost.toml", &format!("vhost = \"{}\"", bed.id), "vhost = \"nope\""),
            "vhost nope",
        ),
        (
            "the hub's certificate",
            bed.adapter_config(
                "hubcert",
                &Creds { cert: bed.env.hub_cert.clone(), key: bed.env.hub_key.clone(), serial: String::new() },
            )
            .config,
            "needs a province's",
        ),
    ];
    for (what, config, named) in &cases {
        let (code, out) = adapter_check(config);
        assert_eq!(code, 1, "{what}: {out}");
        assert!(out.contains("FAIL") && out.contains(named) && out.contains("fix:"), "{what}: {out}");
    }

    // `adapter run` with a certificate the broker refuses stops, once, with the reason.
    let proc = bed.adapter_config("refused", &unadmitted);
    bed.start_adapter(&proc, &[]);
    let status = bed.wait_exit("refused", WAIT).await;
    assert_eq!(status.code(), Some(1));
    let log = bed.log("refused");
    assert!(log.contains("refused the login of prov-65") && log.contains("add-province"), "{log}");
}
