//! Reading and writing envelopes: XML on the wire, JSON at the adapter's local API.
//!
//! Input is hostile until proven otherwise. Before serde sees a document, [`from_xml`]:
//! refuses anything over the size cap without looking at it; scans the whole document once
//! and refuses a DOCTYPE, any entity other than the five predefined ones and character
//! references, processing instructions, attributes, elements outside the exchange namespace,
//! nesting deeper than [`MAX_DEPTH`], and truncated or trailing content; checks the schema
//! version. Only then is it deserialized, into types that can only hold valid values.

use chrono::{DateTime, Utc};
use quick_xml::events::{BytesEnd, BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use quick_xml::writer::Writer;
use serde::{Deserialize, Serialize};

use crate::envelope::{CaseId, Envelope, MessageId, Party};
use crate::error::ErrorCode;
use crate::messages::{Body, ErrorReport, MessageType};

/// The one namespace of every element of the exchange; its last segment is the major
/// version. A breaking change gets a new namespace.
pub const NAMESPACE: &str = "urn:xueji:exchange:1";

/// The schema version this build writes and accepts.
pub const SCHEMA_VERSION: &str = "1.0";

/// Default size cap for one message: an application carries at most ten 1 MB evidence files
/// (base64 adds a third), and archive attachments travel one per message.
pub const DEFAULT_MAX_BYTES: usize = 16 * 1024 * 1024;

/// Deepest element nesting any valid message needs, with room to spare.
pub const MAX_DEPTH: usize = 16;

const ROOT: &str = "envelope";

/// Why a document was refused, with the stable code and the offending message id when it
/// could be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?} ({}): {detail}", code.code())]
pub struct ParseError {
    pub code: ErrorCode,
    pub detail: String,
    pub message_id: Option<MessageId>,
}

impl ParseError {
    fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        ParseError { code, detail: detail.into(), message_id: None }
    }

    /// The `error` body to send back to the sender.
    pub fn report(&self) -> ErrorReport {
        ErrorReport::new(self.code, self.message_id, Some(&self.detail))
    }
}

/// The envelope as it is written: `type` and `schemaVersion` are explicit on the wire.
/// The envelope as it travels: the XML document's elements, or the same model as JSON. Public
/// for its JSON Schema ([`schemars::JsonSchema`], named `Envelope`); read and write envelopes
/// with [`from_json`] / [`to_json`].
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(rename = "Envelope")]
pub struct WireEnvelope {
    #[schemars(extend("const" = "1.0"))]
    schema_version: String,
    message_id: MessageId,
    #[serde(rename = "type")]
    message_type: MessageType,
    sender: Party,
    recipient: Party,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    case_id: Option<CaseId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    correlation_id: Option<MessageId>,
    sent_at: DateTime<Utc>,
    body: Body,
}

impl From<&Envelope> for WireEnvelope {
    fn from(e: &Envelope) -> Self {
        WireEnvelope {
            schema_version: SCHEMA_VERSION.to_owned(),
            message_id: e.message_id,
            message_type: e.message_type(),
            sender: e.sender,
            recipient: e.recipient,
            case_id: e.case_id,
            correlation_id: e.correlation_id,
            sent_at: e.sent_at,
            body: e.body.clone(),
        }
    }
}

impl WireEnvelope {
    fn into_envelope(self) -> Result<Envelope, ParseError> {
        let fail = |code, detail: String| ParseError { code, detail, message_id: Some(self.message_id) };
        if self.schema_version != SCHEMA_VERSION {
            return Err(fail(
                ErrorCode::Version,
                format!("schemaVersion `{}`, expected {SCHEMA_VERSION}", self.schema_version),
            ));
        }
        if self.message_type != self.body.message_type() {
            return Err(fail(
                ErrorCode::Schema,
                format!("type `{}` does not match body element `{}`", self.message_type, self.body.element()),
            ));
        }
        Ok(Envelope {
            message_id: self.message_id,
            sender: self.sender,
            recipient: self.recipient,
            case_id: self.case_id,
            correlation_id: self.correlation_id,
            sent_at: self.sent_at,
            body: self.body,
        })
    }
}

/// Writes an envelope as an XML document in the exchange namespace.
/// The JSON Schema (draft 2020-12) of the JSON form of an envelope, generated from the types
/// ([`WireEnvelope`]); committed as `schemas/json/envelope.schema.json`.
pub fn envelope_json_schema() -> serde_json::Value {
    let mut settings = schemars::generate::SchemaSettings::draft2020_12();
    settings.contract = schemars::generate::Contract::Deserialize;
    let schema = settings.into_generator().root_schema_for::<WireEnvelope>();
    serde_json::to_value(schema).expect("a schema is JSON")
}

pub fn to_xml(envelope: &Envelope) -> String {
    write_xml(envelope, false)
}

/// Writes an envelope as an indented XML document, for people to read.
pub fn to_xml_pretty(envelope: &Envelope) -> String {
    write_xml(envelope, true)
}

fn write_xml(envelope: &Envelope, indent: bool) -> String {
    let mut out = String::new();
    let mut ser = quick_xml::se::Serializer::with_root(&mut out, Some(ROOT)).expect("`envelope` is a valid XML name");
    if indent {
        ser.indent(' ', 2);
    }
    WireEnvelope::from(envelope)
        .serialize(ser)
        .expect("every envelope type serializes to XML (covered by the round-trip tests)");
    // serde cannot emit the namespace declaration, so it goes on the root tag here.
    let rest = out.strip_prefix("<envelope>").expect("root element written by the serializer above");
    let newline = if indent { "\n" } else { "" };
    format!(r#"<?xml version="1.0" encoding="UTF-8"?>{newline}<envelope xmlns="{NAMESPACE}">{rest}{newline}"#)
}

/// Writes an envelope as JSON (the adapter's local API).
pub fn to_json(envelope: &Envelope) -> String {
    serde_json::to_string(&WireEnvelope::from(envelope)).expect("every envelope type serializes to JSON")
}

/// Reads an XML envelope, refusing hostile or invalid input (see the module docs).
///
/// # Errors
/// A [`ParseError`] with the code that says why.
pub fn from_xml(bytes: &[u8], max_bytes: usize) -> Result<Envelope, ParseError> {
    if bytes.len() > max_bytes {
        return Err(ParseError::new(ErrorCode::TooLarge, format!("{} bytes, limit {max_bytes}", bytes.len())));
    }
    let text =
        std::str::from_utf8(bytes).map_err(|e| ParseError::new(ErrorCode::Malformed, format!("not UTF-8: {e}")))?;
    let scan = scan(text)?;
    let with_id = |mut e: ParseError| {
        e.message_id = e.message_id.or(scan.message_id);
        e
    };
    match scan.schema_version.as_deref() {
        Some(SCHEMA_VERSION) => {}
        Some(other) => {
            return Err(with_id(ParseError::new(
                ErrorCode::Version,
                format!("schemaVersion `{other}`, expected {SCHEMA_VERSION}"),
            )));
        }
        None => return Err(with_id(ParseError::new(ErrorCode::Schema, "missing schemaVersion"))),
    }
    let wire: WireEnvelope = quick_xml::de::from_str(&scan.normalized)
        .map_err(|e| with_id(ParseError::new(ErrorCode::Schema, e.to_string())))?;
    wire.into_envelope()
}

/// Reads a JSON envelope with the same guarantees as XML (size cap, version, valid values).
///
/// # Errors
/// A [`ParseError`] with the code that says why.
pub fn from_json(bytes: &[u8], max_bytes: usize) -> Result<Envelope, ParseError> {
    if bytes.len() > max_bytes {
        return Err(ParseError::new(ErrorCode::TooLarge, format!("{} bytes, limit {max_bytes}", bytes.len())));
    }
    /// The fields needed to answer well before the full parse: version and message id.
    #[derive(Deserialize, schemars::JsonSchema)]
    #[serde(rename_all = "camelCase")]
    struct Peek {
        schema_version: Option<String>,
        message_id: Option<String>,
    }
    let syntax = |e: serde_json::Error| {
        let code = if e.is_syntax() || e.is_eof() { ErrorCode::Malformed } else { ErrorCode::Schema };
        ParseError::new(code, e.to_string())
    };
    let peek: Peek = serde_json::from_slice(bytes).map_err(syntax)?;
    let message_id = peek.message_id.as_deref().and_then(|id| MessageId::parse(id).ok());
    let with_id = |e: ParseError| ParseError { message_id, ..e };
    match peek.schema_version.as_deref() {
        Some(SCHEMA_VERSION) => {}
        Some(other) => {
            return Err(with_id(ParseError::new(
                ErrorCode::Version,
                format!("schemaVersion `{other}`, expected {SCHEMA_VERSION}"),
            )));
        }
        None => return Err(with_id(ParseError::new(ErrorCode::Schema, "missing schemaVersion"))),
    }
    let wire: WireEnvelope = serde_json::from_slice(bytes).map_err(|e| with_id(syntax(e)))?;
    wire.into_envelope()
}

/// What the safety scan learned on the way.
struct Scan {
    schema_version: Option<String>,
    message_id: Option<MessageId>,
    /// The document as serde should see it: local names only, no namespace declarations, no
    /// XML declaration or comments. (serde ignores namespaces and would otherwise take an
    /// `xmlns` attribute for an unknown field.)
    normalized: String,
}

/// One pass over the whole document with a namespace-aware reader; see the module docs. A
/// refusal carries the message id when it was read before the fault.
fn scan(text: &str) -> Result<Scan, ParseError> {
    let mut out = Scan { schema_version: None, message_id: None, normalized: String::new() };
    match scan_into(text, &mut out) {
        Ok(()) => Ok(out),
        Err(e) => Err(ParseError { message_id: e.message_id.or(out.message_id), ..e }),
    }
}

fn scan_into(text: &str, out: &mut Scan) -> Result<(), ParseError> {
    let malformed = |detail: String| ParseError::new(ErrorCode::Malformed, detail);
    let mut reader = NsReader::from_str(text);
    reader.config_mut().check_end_names = true;

    let mut depth = 0usize;
    let mut root_done = false;
    let mut seen_any = false;
    // Text of the envelope's direct children we want early: (local name, text so far).
    let mut capture: Option<(String, String)> = None;
    let mut writer = Writer::new(Vec::with_capacity(text.len()));
    let write = |writer: &mut Writer<Vec<u8>>, event: Event<'_>| {
        writer.write_event(event).expect("writing to a Vec cannot fail");
    };

    loop {
        let position = reader.buffer_position();
        let (ns, event) = reader.read_resolved_event().map_err(|e| malformed(format!("after byte {position}: {e}")))?;
        match event {
            Event::Decl(decl) => {
                if seen_any {
                    return Err(malformed("XML declaration after the start".into()));
                }
                if let Some(enc) = decl.encoding() {
                    let enc = enc.map_err(|e| malformed(e.to_string()))?;
                    if !enc.eq_ignore_ascii_case("utf-8") {
                        return Err(malformed(format!("encoding `{enc}`; only UTF-8 is accepted")));
                    }
                }
            }
            Event::DocType(_) => {
                return Err(ParseError::new(ErrorCode::DtdForbidden, "DOCTYPE declaration"));
            }
            Event::PI(_) => return Err(ParseError::new(ErrorCode::Schema, "processing instruction")),
            Event::GeneralRef(r) => {
                let name: &str = r.as_ref();
                let predefined = matches!(name, "lt" | "gt" | "amp" | "apos" | "quot");
                if !(predefined || r.is_char_ref()) {
                    return Err(ParseError::new(ErrorCode::DtdForbidden, format!("entity reference &{name};")));
                }
                if r.is_char_ref() {
                    r.resolve_char_ref().map_err(|e| malformed(e.to_string()))?;
                }
                if depth == 0 {
                    return Err(malformed("content outside the root element".into()));
                }
                if let Some((_, buf)) = capture.as_mut() {
                    match r.resolve_char_ref() {
                        Ok(Some(c)) => buf.push(c),
                        _ => buf.push_str(quick_xml::escape::resolve_predefined_entity(name).unwrap_or_default()),
                    }
                }
                write(&mut writer, Event::GeneralRef(r));
            }
            Event::Start(ref start) | Event::Empty(ref start) => {
                if root_done {
                    return Err(malformed("content after the root element".into()));
                }
                match ns {
                    ResolveResult::Bound(n) if n.as_ref() == NAMESPACE => {}
                    ResolveResult::Bound(n) => {
                        return Err(ParseError::new(
                            ErrorCode::Namespace,
                            format!("element in namespace `{}`", n.as_ref()),
                        ));
                    }
                    _ => {
                        return Err(ParseError::new(
                            ErrorCode::Namespace,
                            format!("element without the namespace {NAMESPACE}"),
                        ));
                    }
                }
                let local = start.local_name();
                let local: &str = local.as_ref();
                if depth == 0 && local != ROOT {
                    return Err(ParseError::new(
                        ErrorCode::Schema,
                        format!("root element `{local}`, expected `{ROOT}`"),
                    ));
                }
                for attr in start.attributes() {
                    let attr = attr.map_err(|e| malformed(e.to_string()))?;
                    if attr.key.as_namespace_binding().is_none() {
                        return Err(ParseError::new(
                            ErrorCode::Schema,
                            format!("attribute `{}` not allowed", attr.key.as_ref()),
                        ));
                    }
                }
                seen_any = true;
                let is_empty = matches!(event, Event::Empty(_));
                let bare = BytesStart::new(local.to_owned());
                write(&mut writer, if is_empty { Event::Empty(bare) } else { Event::Start(bare) });
                if depth == 1 && matches!(local, "schemaVersion" | "messageId") {
                    capture = Some((local.to_owned(), String::new()));
                    if is_empty {
                        finish_capture(&mut capture, out);
                    }
                }
                if is_empty {
                    if depth == 0 {
                        root_done = true;
                    }
                } else {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(ParseError::new(ErrorCode::Schema, format!("nesting deeper than {MAX_DEPTH}")));
                    }
                }
            }
            Event::End(ref end) => {
                let local = end.local_name();
                write(&mut writer, Event::End(BytesEnd::new(AsRef::<str>::as_ref(&local).to_owned())));
                depth -= 1;
                if depth == 1 {
                    finish_capture(&mut capture, out);
                }
                if depth == 0 {
                    root_done = true;
                }
            }
            Event::Text(t) => {
                let content = t.xml10_content();
                if depth == 0 && !content.trim().is_empty() {
                    return Err(malformed("text outside the root element".into()));
                }
                if let Some((_, buf)) = capture.as_mut() {
                    buf.push_str(&content);
                }
                if depth > 0 {
                    write(&mut writer, Event::Text(t));
                }
            }
            Event::CData(c) => {
                if depth == 0 {
                    return Err(malformed("CDATA outside the root element".into()));
                }
                if let Some((_, buf)) = capture.as_mut() {
                    buf.push_str(&c.xml10_content());
                }
                write(&mut writer, Event::CData(c));
            }
            Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !root_done {
        let why = if seen_any { "document ends before the root element is closed" } else { "no root element" };
        return Err(malformed(why.into()));
    }
    out.normalized = String::from_utf8(writer.into_inner()).expect("written from UTF-8 input");
    Ok(())
}

fn finish_capture(capture: &mut Option<(String, String)>, out: &mut Scan) {
    if let Some((name, text)) = capture.take() {
        match name.as_str() {
            "schemaVersion" => out.schema_version = Some(text),
            _ => out.message_id = MessageId::parse(&text).ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples;

    #[test]
    fn every_sample_round_trips_through_xml_and_json() {
        let all = MessageType::ALL.iter().map(|&t| samples::envelope(t)).chain(samples::variants());
        for env in all {
            let t = env.message_type();
            for xml in [to_xml(&env), to_xml_pretty(&env)] {
                let back = from_xml(xml.as_bytes(), DEFAULT_MAX_BYTES).unwrap_or_else(|e| panic!("{t}: {e}\n{xml}"));
                assert_eq!(back, env, "{t}");
            }
            let json = to_json(&env);
            assert_eq!(from_json(json.as_bytes(), DEFAULT_MAX_BYTES).unwrap(), env, "{t}");
        }
    }

    #[test]
    fn a_document_refused_mid_way_names_the_message_id_read_before() {
        let env = samples::envelope(MessageType::LookupRequest);
        let xml = to_xml(&env);
        // Truncated inside the body, after the envelope's messageId.
        let cut = xml.find("<body>").unwrap() + 20;
        let err = from_xml(&xml.as_bytes()[..cut], DEFAULT_MAX_BYTES).unwrap_err();
        assert_eq!((err.code, err.message_id), (ErrorCode::Malformed, Some(env.message_id)));
        // Nested too deep inside the body.
        let deep = format!("{}{}", "<x>".repeat(MAX_DEPTH + 2), "</x>".repeat(MAX_DEPTH + 2));
        let xml2 = xml.replace("<body>", &format!("<body>{deep}"));
        let err = from_xml(xml2.as_bytes(), DEFAULT_MAX_BYTES).unwrap_err();
        assert_eq!((err.code, err.message_id), (ErrorCode::Schema, Some(env.message_id)));
        // A broken tag after the id.
        let xml3 = xml.replace("<body>", "<body><<");
        let err = from_xml(xml3.as_bytes(), DEFAULT_MAX_BYTES).unwrap_err();
        assert_eq!((err.code, err.message_id), (ErrorCode::Malformed, Some(env.message_id)));
    }

    #[test]
    fn type_must_match_the_body() {
        let env = samples::envelope(MessageType::CaseCancel);
        let xml = to_xml(&env).replace("<type>case.cancel</type>", "<type>case.released</type>");
        let err = from_xml(xml.as_bytes(), DEFAULT_MAX_BYTES).unwrap_err();
        assert_eq!(err.code, ErrorCode::Schema);
        assert_eq!(err.message_id, Some(env.message_id));
    }
}
