//! Names and free text.

use serde::{Deserialize, Serialize};

use super::{IdError, IdKind, IdProblem, string_id};

/// Whether `c` may appear in an XML 1.0 document at all (surrogates cannot be in a `str`).
pub(crate) fn is_xml_char(c: char) -> bool {
    !matches!(c, '\u{FFFE}' | '\u{FFFF}')
}

/// Checks length bounds (in characters), no control characters (except tab, line feed and
/// carriage return when `multiline`), only XML characters, and no leading or trailing white
/// space. The XSD patterns `PersonNameType` and `TextType` say the same.
fn check_text(s: &str, max: usize, multiline: bool, kind: IdKind, expected: &'static str) -> Result<(), IdError> {
    let len = s.chars().count();
    if len == 0 || len > max {
        return Err(IdError::new(kind, IdProblem::Length { expected, found: len }));
    }
    let bad = |c: char| (c.is_control() && !(multiline && matches!(c, '\n' | '\t' | '\r'))) || !is_xml_char(c);
    if let Some(pos) = s.chars().position(bad) {
        return Err(IdError::new(kind, IdProblem::Character { position: pos + 1 }));
    }
    if s.starts_with(char::is_whitespace) {
        return Err(IdError::new(kind, IdProblem::Character { position: 1 }));
    }
    if s.ends_with(char::is_whitespace) {
        return Err(IdError::new(kind, IdProblem::Character { position: len }));
    }
    Ok(())
}

/// Whether `c` is a format character (Unicode general category Cf): invisible, or changing
/// the direction of what follows (U+202E, U+2066…), zero-width joiners, the byte order mark.
/// The list is that of Unicode 15; the XSD says `\p{Cf}`.
pub(crate) fn is_format_char(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

/// A person's name (姓名): 1–50 characters, no control characters, no invisible or
/// direction-changing characters, no surrounding spaces. Names are compared exactly:
/// verification matches name *and* identifier (domain.md R17), so two names that look the
/// same must be the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct PersonName(String);

impl PersonName {
    /// # Errors
    /// Empty, longer than 50 characters, control or format characters, or surrounding spaces.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        check_text(s, 50, false, IdKind::PersonName, "1-50")?;
        if let Some(pos) = s.chars().position(is_format_char) {
            return Err(IdError::new(IdKind::PersonName, IdProblem::Invisible { position: pos + 1 }));
        }
        Ok(PersonName(s.to_owned()))
    }
}

impl AsRef<str> for PersonName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

string_id!(PersonName);

/// Free text written by a person: a reason, an opinion, a remark. 1–500 characters; line
/// breaks allowed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct Text(String);

impl Text {
    /// # Errors
    /// Empty, longer than 500 characters, control characters or surrounding spaces.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        check_text(s, 500, true, IdKind::Text, "1-500")?;
        Ok(Text(s.to_owned()))
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

string_id!(Text);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert!(PersonName::parse("阿依古丽·买买提").is_ok());
        for bad in ["", " 张三", "张三 ", "张\u{0}三", &"长".repeat(51)] {
            assert!(PersonName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Text::parse("第一行\n第二行").is_ok());
        assert!(PersonName::parse("第一行\n第二行").is_err());
    }

    #[test]
    fn names_with_invisible_or_direction_changing_characters_are_refused() {
        for bad in
            ["张\u{202E}三", "\u{2066}李四\u{2069}", "王\u{200B}五", "\u{FEFF}赵六", "钱\u{200D}七", "孙\u{00AD}八"]
        {
            let err = PersonName::parse(bad).unwrap_err();
            assert!(matches!(err.problem, IdProblem::Invisible { .. }), "{bad:?}: {err}");
        }
        // The middle dot of minority names is a visible character.
        assert!(PersonName::parse("阿依古丽·买买提").is_ok());
    }
}
