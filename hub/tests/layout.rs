//! The layout the hub's doc comment promises, checked on the source: no two top-level modules
//! import each other, directly or around a circle, and no source file of the workspace grows
//! past about 600 lines of code (its unit tests aside) without saying why in its header.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 600;
/// What a file's header says when it is long on purpose.
const REASON: &str = "Long on purpose:";

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target" && n != "fuzz" && !n.to_string_lossy().starts_with('.')) {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn hub_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level module a file of `hub/src` belongs to (`None` for the crate roots).
fn top_module(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(hub_src()).unwrap();
    let first = rel.components().next()?.as_os_str().to_string_lossy().into_owned();
    let name = first.trim_end_matches(".rs").to_owned();
    (name != "lib" && name != "main").then_some(name)
}

/// The top-level modules `source` names through `crate::` (in paths and in `use crate::{…}`).
fn crate_references(source: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let code: String = source.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group, e.g. `{housekeeping, relay, store::{a, b}}`.
            let mut depth = 0;
            let end = group
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => return true,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    false
                })
                .map_or(group.len(), |(i, _)| i);
            let mut names = Vec::new();
            let mut depth = 0;
            let mut start = true;
            for (i, c) in group[..end].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && depth == 0 && (c.is_alphanumeric() || c == '_') => {
                        let len = group[i..].find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(0);
                        names.push(&group[i..i + len]);
                        start = false;
                    }
                    _ => {}
                }
            }
            names
        } else {
            let len = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
            vec![&rest[..len]]
        };
        found.extend(names.into_iter().filter(|n| modules.contains(*n)).map(str::to_owned));
    }
    found
}

/// Which top-level module imports which.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&hub_src(), &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| top_module(f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for file in &files {
        let Some(module) = top_module(file) else { continue };
        let source = std::fs::read_to_string(file).unwrap();
        let mut refs = crate_references(&source, &modules);
        refs.remove(&module);
        graph.get_mut(&module).unwrap().extend(refs);
    }
    graph
}

/// A circle of imports, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in &graph[node] {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_two_hub_modules_import_each_other_even_around_a_circle() {
    let graph = module_graph();
    // The check sees real imports: the service dispatches to the handlers, the handlers use
    // the workflow and the store.
    assert!(graph["service"].contains("handlers"), "{graph:?}");
    assert!(graph["handlers"].contains("workflow") && graph["handlers"].contains("store"), "{graph:?}");
    assert_eq!(find_cycle(&graph), None, "imports among hub modules: {graph:#?}");
}

#[test]
fn the_cycle_check_finds_a_circle() {
    let modules: BTreeSet<String> = ["a", "b", "c"].map(str::to_owned).into();
    assert_eq!(crate_references("use crate::{a, b::{x, y}};\nlet _ = crate::c::f(); // crate::d", &modules), modules);
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["c".to_owned()])),
        ("c".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]
    .into();
    assert_eq!(find_cycle(&graph).map(|c| c.len()), Some(4));
}

#[test]
fn no_source_file_is_long_without_a_reason_in_its_header() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    for dir in ["hub", "adapters", "schemas", "certs", "tests"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 50, "the walk finds the workspace's files");
    let mut long = Vec::new();
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = source.lines().collect();
        // A file's unit tests, at its end, are not counted.
        let code = lines
            .windows(2)
            .position(|w| w[0] == "#[cfg(test)]" && w[1].starts_with("mod tests"))
            .unwrap_or(lines.len());
        let header = lines.iter().take_while(|l| l.starts_with("//!")).any(|l| l.contains(REASON));
        if code > MAX_LINES && !header {
            long.push(format!("{} ({code} lines)", file.display()));
        }
    }
    assert!(long.is_empty(), "over {MAX_LINES} lines with no `{REASON}` in the header: {long:#?}");
}
