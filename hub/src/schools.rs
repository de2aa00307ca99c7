//! Reading the school registry's CSV (from the national institution-code system).

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use schemas::ids::{ProvinceCode, SchoolCode};

use crate::store::schools::School;

/// Parses a CSV file with the header `code,province,name` and optional columns `active`,
/// `code_usable_from`, `department` (the supervising department's 12-digit code) and `stages`
/// (`PRIMARY JUNIOR SENIOR`, space-separated), in any order (RFC 4180: a name with a comma or a
/// quote is quoted). Every code is validated.
///
/// # Errors
/// The first bad row, with its line and the field at fault.
pub fn read_csv(text: &str) -> Result<Vec<School>> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(text.as_bytes());
    let headers = reader.headers().context("the header line")?.clone();
    let column = |name: &str| headers.iter().position(|h| h == name);
    let (Some(code_at), Some(province_at), Some(name_at)) = (column("code"), column("province"), column("name")) else {
        bail!("the first line must be the header code,province,name[,active[,code_usable_from]], not {headers:?}");
    };
    let (active_at, from_at) = (column("active"), column("code_usable_from"));
    let (department_at, stages_at) = (column("department"), column("stages"));
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.context("unreadable CSV")?;
        let line = record.position().map_or(0, csv::Position::line);
        let at = |field: &str| format!("line {line}, field `{field}`");
        let get = |i: Option<usize>| i.and_then(|i| record.get(i)).unwrap_or("");
        let code = SchoolCode::parse(get(Some(code_at))).with_context(|| at("code"))?;
        let province = ProvinceCode::parse(get(Some(province_at))).with_context(|| at("province"))?;
        let name = get(Some(name_at));
        if name.is_empty() {
            bail!("{}: empty", at("name"));
        }
        let active = match get(active_at) {
            "" | "true" | "1" => true,
            "false" | "0" => false,
            other => bail!("{}: `{other}` is not true or false", at("active")),
        };
        let code_usable_from = match get(from_at) {
            "" => None,
            t => Some(t.parse::<DateTime<Utc>>().with_context(|| {
                format!("{}: `{t}` is not an RFC 3339 time such as 2026-09-01T00:00:00+08:00", at("code_usable_from"))
            })?),
        };
        let department = match get(department_at) {
            "" => None,
            d => Some(schemas::ids::DivisionCode::parse(d).with_context(|| at("department"))?.to_string()),
        };
        let mut stages = Vec::new();
        for s in get(stages_at).split_whitespace() {
            let stage = schemas::ids::Stage::try_from(s.to_owned())
                .map_err(anyhow::Error::msg)
                .with_context(|| at("stages"))?;
            stages.push(stage.as_str().to_owned());
        }
        out.push(School {
            code: code.to_string(),
            province: province.code().to_owned(),
            name: name.to_owned(),
            active,
            code_usable_from,
            department,
            stages,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_registry_and_names_bad_lines() {
        let ok =
            read_csv("code,province,name,active\n3137000456,37,青岛市实验小学\n3151000123,51,成都市示范小学,false\n")
                .unwrap();
        assert_eq!(ok.len(), 2);
        assert!(ok[0].active && !ok[1].active);
        let bad = read_csv("code,province,name\n313700045,37,x\n").unwrap_err();
        assert!(format!("{bad:#}").contains("line 2, field `code`"), "{bad:#}");
        assert!(read_csv("nope\n").is_err());
        // A quoted name may hold a comma and a quote; a byte order mark is not a header.
        let quoted =
            read_csv("\u{feff}code,province,name\n3137000456,37,\"青岛市实验小学, 东校区 \"\"新\"\"\"\n").unwrap();
        assert_eq!(quoted[0].name, "青岛市实验小学, 东校区 \"新\"");
        let bad =
            read_csv("code,province,name,active,code_usable_from\n3137000456,37,x,true,2026-13-01\n").unwrap_err();
        assert!(format!("{bad:#}").contains("line 2, field `code_usable_from`"), "{bad:#}");
        let with =
            read_csv("code,province,name,department,stages\n3137000456,37,x,370202000000,PRIMARY JUNIOR\n").unwrap();
        assert_eq!(with[0].department.as_deref(), Some("370202000000"));
        assert_eq!(with[0].stages, vec!["PRIMARY", "JUNIOR"]);
        assert!(read_csv("code,province,name,department\n3137000456,37,x,37020200000\n").is_err());
        assert!(read_csv("code,province,name,stages\n3137000456,37,x,KINDERGARTEN\n").is_err());
        let bad = read_csv("code,province,name,active\n3137000456,37,x,yes\n").unwrap_err();
        assert!(format!("{bad:#}").contains("field `active`"), "{bad:#}");
    }
}
