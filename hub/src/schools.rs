//! Reading the school registry's CSV (from the national institution-code system).

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use schemas::ids::{ProvinceCode, SchoolCode};

use crate::store::schools::School;

/// Parses `code,province,name[,active[,code_usable_from]]` with a header line. Names may not
/// contain commas; every code is validated.
///
/// # Errors
/// The first bad line, with its number.
pub fn read_csv(text: &str) -> Result<Vec<School>> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    match lines.next() {
        Some((_, header)) if header.trim_start_matches('\u{feff}').starts_with("code,province,name") => {}
        _ => bail!("the first line must be the header code,province,name[,active[,code_usable_from]]"),
    }
    for (n, line) in lines {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let at = || format!("line {}", n + 1);
        if !(3..=5).contains(&fields.len()) {
            bail!("{}: expected 3 to 5 fields", at());
        }
        let code = SchoolCode::parse(fields[0]).with_context(at)?;
        let province = ProvinceCode::parse(fields[1]).with_context(at)?;
        if fields[2].is_empty() {
            bail!("{}: empty name", at());
        }
        let active = match fields.get(3).copied() {
            None | Some("") | Some("true") | Some("1") => true,
            Some("false") | Some("0") => false,
            Some(other) => bail!("{}: active must be true or false, not {other}", at()),
        };
        let code_usable_from = match fields.get(4).copied() {
            None | Some("") => None,
            Some(t) => Some(t.parse::<DateTime<Utc>>().with_context(at)?),
        };
        out.push(School {
            code: code.to_string(),
            province: province.code().to_owned(),
            name: fields[2].to_owned(),
            active,
            code_usable_from,
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
        assert!(format!("{bad:#}").contains("line 2"), "{bad:#}");
        assert!(read_csv("nope\n").is_err());
    }
}
