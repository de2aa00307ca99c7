//! Any bytes as the JSON form of an envelope (the adapter's local API): parsing never panics,
//! and what parses serializes to JSON, and to XML, that parse back to the same envelope.
#![no_main]

use libfuzzer_sys::fuzz_target;
use schemas::codec;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = codec::from_json(data, schemas::DEFAULT_MAX_BYTES) {
        let json = codec::to_json(&envelope);
        let back = codec::from_json(json.as_bytes(), usize::MAX).expect("what the codec writes, it reads");
        assert_eq!(back, envelope, "the JSON round trip keeps the envelope");
        let xml = codec::to_xml(&envelope);
        let back = codec::from_xml(xml.as_bytes(), usize::MAX).expect("JSON that parses is a valid envelope");
        assert_eq!(back, envelope, "the JSON and XML forms agree");
    }
});
