//! docker-compose.yml, checked without Docker: the file's own rules (an image that is built,
//! a healthcheck on every long-running service, declared volumes, bind sources that exist),
//! then the stack as its containers would see it — the `pki` service's script run on volumes
//! made of directories, and `hub check --offline` / `adapter check --offline` run against each
//! service's configuration with its mounts and environment remapped. A key or path the stack
//! references but does not provide fails here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const IMAGE: &str = "xueji-exchange:dev";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn compose(text: &str) -> Value {
    let mut yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).expect("docker-compose.yml is YAML");
    yaml.apply_merge().expect("merge keys");
    serde_json::to_value(yaml).expect("as JSON")
}

/// A service's mount: a named volume or a path of the repository, at a container path.
#[derive(Debug, Clone)]
struct Mount {
    volume: Option<String>,
    bind: Option<PathBuf>,
    target: String,
    read_only: bool,
}

fn mounts(service: &Value) -> Vec<Mount> {
    service["volumes"]
        .as_array()
        .map(|v| v.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|m| {
            let spec = m.as_str().expect("short volume syntax");
            let mut parts = spec.split(':');
            let (source, target) = (parts.next().unwrap(), parts.next().expect("a target").to_owned());
            let read_only = parts.next() == Some("ro");
            if source.starts_with("./") {
                Mount { volume: None, bind: Some(repo().join(source.trim_start_matches("./"))), target, read_only }
            } else {
                Mount { volume: Some(source.to_owned()), bind: None, target, read_only }
            }
        })
        .collect()
}

/// What the services say: (name, service).
fn services(c: &Value) -> Vec<(String, Value)> {
    c["services"].as_object().expect("services").iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The command line of a service as words.
fn command(service: &Value) -> Vec<String> {
    match &service["command"] {
        Value::Array(words) => words.iter().filter_map(|w| w.as_str().map(str::to_owned)).collect(),
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        _ => vec![],
    }
}

/// Host paths for a service's container paths, longest mount first.
struct Remap(Vec<(String, PathBuf)>);

impl Remap {
    fn of(service: &Value, volumes: &Path) -> Remap {
        let mut pairs: Vec<(String, PathBuf)> = mounts(service)
            .into_iter()
            .map(|m| (m.target, m.bind.unwrap_or_else(|| volumes.join(m.volume.unwrap()))))
            .collect();
        pairs.sort_by_key(|(t, _)| std::cmp::Reverse(t.len()));
        Remap(pairs)
    }

    /// A container path on the host, if a mount provides it.
    fn path(&self, container: &str) -> Option<PathBuf> {
        self.0.iter().find_map(|(target, host)| {
            let rest = container.strip_prefix(target.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then(|| PathBuf::from(format!("{}{rest}", host.display())))
        })
    }

    /// Every quoted container path in a configuration file, replaced by its host path.
    fn text(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (target, host) in &self.0 {
            out = out.replace(&format!("\"{target}/"), &format!("\"{}/", host.display()));
            out = out.replace(&format!("\"{target}\""), &format!("\"{}\"", host.display()));
        }
        out
    }
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() { Ok(text) } else { Err(format!("{cmd:?} failed:\n{text}")) }
}

/// Checks the stack in `text`; returns what was checked.
fn check_stack(text: &str) -> Result<Vec<String>, String> {
    let c = compose(text);
    let declared: Vec<&String> = c["volumes"].as_object().map(|v| v.keys().collect()).unwrap_or_default();
    let mut checked = Vec::new();
    for (name, s) in services(&c) {
        if s["image"] == IMAGE && s.get("build").is_none() {
            return Err(format!("{name}: uses {IMAGE} but does not say how to build it"));
        }
        if s["restart"] == "unless-stopped" && s.get("healthcheck").is_none() {
            return Err(format!("{name}: runs for good but has no healthcheck"));
        }
        for m in mounts(&s) {
            match (&m.volume, &m.bind) {
                (Some(v), _) if !declared.contains(&v) => return Err(format!("{name}: volume {v} is not declared")),
                // What a service reads must be in the repository; a writable directory (the
                // user's client credentials) Docker creates.
                (_, Some(p)) if m.read_only && !p.exists() => {
                    return Err(format!("{name}: {} does not exist", p.display()));
                }
                _ => {}
            }
        }
        if let Some(env) = s["environment"].as_object()
            && env.keys().any(|k| (k.contains("PASSWORD") || k.ends_with("_PASS")) && !k.ends_with("_FILE"))
        {
            return Err(format!("{name}: a secret in the environment"));
        }
    }

    // The pki service, run on directories standing for its volumes.
    let dir = tempfile::tempdir().unwrap();
    let (volumes, root) = (dir.path().join("volumes"), dir.path().join("pki-root"));
    for v in &declared {
        std::fs::create_dir_all(volumes.join(v)).unwrap();
    }
    let pki = c["services"]["pki"].clone();
    for m in mounts(&pki) {
        let at = root.join(m.target.trim_start_matches('/'));
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        let source = m.bind.unwrap_or_else(|| volumes.join(m.volume.unwrap()));
        if source.is_dir() || !source.exists() {
            std::fs::create_dir_all(&source).unwrap();
        }
        std::os::unix::fs::symlink(&source, &at).unwrap();
    }
    let script = pki["entrypoint"][0].as_str().expect("the pki entrypoint");
    let script = repo().join("hub/deploy").join(Path::new(script).file_name().unwrap());
    let path = format!("{}:{}", e2e::bin_dir().display(), std::env::var("PATH").unwrap_or_default());
    // The user's client directory is a bind mount into the repository: keep it out of it.
    let client = dir.path().join("client");
    std::fs::create_dir_all(&client).unwrap();
    std::fs::remove_file(root.join("client")).unwrap();
    std::os::unix::fs::symlink(&client, root.join("client")).unwrap();
    run(Command::new("sh").arg(&script).env("XJ_ROOT", &root).env("PATH", &path))?;
    checked.push("pki".to_owned());

    // Every path a service's environment names, and every file the broker's TLS options name,
    // exists as that service sees it.
    for (name, s) in services(&c) {
        let remap = Remap::of(&s, &volumes);
        for (k, v) in s["environment"].as_object().into_iter().flatten() {
            if let Some(v) = v.as_str().filter(|v| v.starts_with('/')) {
                let host = remap.path(v).ok_or_else(|| format!("{name}: {k}={v}: no mount provides it"))?;
                if !host.exists() {
                    return Err(format!("{name}: {k}={v} does not exist"));
                }
            }
        }
        if name == "rabbitmq" {
            let advanced = remap.path("/etc/rabbitmq-xueji/advanced.config").ok_or("rabbitmq: no advanced.config")?;
            let text = std::fs::read_to_string(&advanced).map_err(|e| format!("rabbitmq: {e}"))?;
            for path in text.split('"').filter(|p| p.starts_with("/etc/rabbitmq")) {
                if !remap.path(path).is_some_and(|p| p.exists()) {
                    return Err(format!("rabbitmq: advanced.config names {path}, which it does not have"));
                }
            }
            let admin = std::fs::read_to_string(volumes.join("rabbitmq-conf/conf.d/20-admin.conf")).unwrap_or_default();
            let password = std::fs::read_to_string(volumes.join("hub-secrets/mgmt_password")).unwrap_or_default();
            if password.is_empty() || !admin.contains(&format!("default_pass = {password}")) {
                return Err("rabbitmq: its administrator's password is not the hub's".into());
            }
        }
    }

    // Each service that runs the hub or an adapter, as it sees its files.
    for (name, s) in services(&c) {
        let words = command(&s);
        let program = match words.first().map(String::as_str) {
            Some("hub") => "hub",
            Some("adapter") => "adapter",
            Some("sh") => "sh",
            _ => continue,
        };
        let remap = Remap::of(&s, &volumes);
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in s["environment"].as_object().into_iter().flatten() {
            let v = v.as_str().unwrap_or_default();
            let v = if v.starts_with('/') {
                remap.path(v).map(|p| p.display().to_string()).unwrap_or(v.to_owned())
            } else {
                v.to_owned()
            };
            env.insert(k.clone(), v);
        }
        let words: Vec<String> =
            if program == "sh" { words[2].split_whitespace().map(str::to_owned).collect() } else { words };
        // Every file the command names must be there.
        for w in words.iter().filter(|w| w.starts_with('/')) {
            let host = remap.path(w).ok_or_else(|| format!("{name}: no mount provides {w}"))?;
            if !host.exists() {
                return Err(format!("{name}: {w} does not exist (as {})", host.display()));
            }
        }
        let Some(config) = words.iter().position(|w| w == "--config").map(|i| words[i + 1].clone()) else { continue };
        let host = remap.path(&config).ok_or_else(|| format!("{name}: no mount provides {config}"))?;
        let text = std::fs::read_to_string(&host).map_err(|e| format!("{name}: {config}: {e}"))?;
        let remapped = dir.path().join(format!("{name}.toml"));
        std::fs::write(&remapped, remap.text(&text)).unwrap();
        let tool = if words.iter().any(|w| w == "adapter") { "adapter" } else { "hub" };
        let mut cmd = Command::new(e2e::binary(tool));
        if tool == "hub" {
            cmd.arg("--config").arg(&remapped).args(["check", "--offline"]);
        } else {
            cmd.args(["check", "--offline", "--config"]).arg(&remapped);
        }
        cmd.envs(&env);
        run(&mut cmd).map_err(|e| format!("{name}: {e}"))?;
        checked.push(name);
    }
    // The sample school registry the provision service loads parses.
    hub::schools::read_csv(&std::fs::read_to_string(repo().join("hub/deploy/schools.sample.csv")).unwrap())
        .map_err(|e| format!("schools.sample.csv: {e:#}"))?;
    Ok(checked)
}

fn compose_text() -> String {
    std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap()
}

#[test]
fn the_compose_stack_provides_every_key_and_path_its_services_use() {
    let checked = check_stack(&compose_text()).unwrap_or_else(|e| panic!("{e}"));
    for service in ["pki", "provision", "hub", "adapter-37", "adapter-44"] {
        assert!(checked.iter().any(|c| c == service), "{service} checked: {checked:?}");
    }
}

#[test]
fn a_wrong_key_or_path_in_the_stack_fails_the_check() {
    let good = compose_text();
    let broken = |from: &str, to: &str| {
        assert!(good.contains(from), "{from}");
        good.replacen(from, to, 1)
    };
    let cases = [
        (
            "adapter-37 given 44's keys",
            broken("      - adapter-37-tls:/tls:ro", "      - adapter-44-tls:/tls:ro"),
            "adapter-37",
        ),
        ("the hub without its secrets", broken("      - hub-secrets:/run/secrets:ro\n", ""), "PASSWORD_FILE"),
        (
            "a configuration that is not there",
            broken("./adapters/deploy/adapter-44.toml", "./adapters/deploy/adapter-45.toml"),
            "adapter-45",
        ),
        (
            "a service that runs for good without a healthcheck",
            broken(
                "    healthcheck:\n      test: [\"CMD\", \"pg_isready\", \"-U\", \"xueji\"]\n      interval: 10s\n      retries: 12\n",
                "",
            ),
            "healthcheck",
        ),
    ];
    for (what, text, named) in cases {
        let err = check_stack(&text).expect_err(what);
        assert!(err.contains(named), "{what}: {err}");
    }
}
