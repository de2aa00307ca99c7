//! What the commands print: a table for people (`--output table`, the default) or the JSON
//! the API answered (`--output json`), for scripts. Columns are picked by JSON pointer, so the
//! table shows exactly the API's fields.

use comfy_table::{ContentArrangement, Table, presets};
use serde_json::Value;

/// How a command prints its answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for a terminal.
    #[default]
    Table,
    /// The API's JSON, pretty-printed.
    Json,
}

/// A column: its header and where its value is (a JSON pointer into each row).
pub type Column = (&'static str, &'static str);

/// A cell's text: strings as they are, nothing for null, other values as JSON.
fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Rows as a table of `columns`.
pub fn table(rows: &[Value], columns: &[Column]) -> String {
    let mut t = Table::new();
    t.load_style(presets::NOTHING).set_content_arrangement(ContentArrangement::Disabled);
    t.set_header(columns.iter().map(|(h, _)| *h));
    for row in rows {
        t.add_row(columns.iter().map(|(_, p)| cell(row.pointer(p))));
    }
    let mut out = t.to_string();
    out.push('\n');
    out
}

/// One object as `name: value` lines.
pub fn fields(object: &Value, columns: &[Column]) -> String {
    let width = columns.iter().map(|(h, _)| h.chars().count()).max().unwrap_or(0);
    columns.iter().map(|(h, p)| format!("{h:<width$}  {}\n", cell(object.pointer(p)))).collect()
}

/// The JSON, pretty.
pub fn json(value: &Value) -> String {
    format!("{value:#}\n")
}

/// The rows of an answer that is an array (an empty list otherwise).
pub fn rows(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_shows_the_picked_fields_and_nothing_for_null() {
        let rows = serde_json::json!([
            {"caseId": "a1", "waiting": {"party": "prov-37"}, "lastError": null, "attempts": 2},
            {"caseId": "b2", "waiting": null, "lastError": "E_X", "attempts": 0},
        ]);
        let t = table(
            rows.as_array().unwrap(),
            &[("CASE", "/caseId"), ("WAITING ON", "/waiting/party"), ("TRIES", "/attempts"), ("ERROR", "/lastError")],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].contains("CASE") && lines[0].contains("WAITING ON"), "{t}");
        assert!(lines[1].contains("a1") && lines[1].contains("prov-37") && lines[1].contains('2'), "{t}");
        assert!(lines[2].contains("b2") && lines[2].contains("E_X") && !lines[2].contains("null"), "{t}");
        let f = fields(&rows[0], &[("case", "/caseId"), ("attempts", "/attempts")]);
        assert_eq!(f, "case      a1\nattempts  2\n");
    }
}
