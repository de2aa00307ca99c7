//! Any bytes as a wire envelope: parsing never panics, and what parses serializes to XML that
//! parses back to the same envelope.
#![no_main]

use libfuzzer_sys::fuzz_target;
use schemas::codec;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = codec::from_xml(data, schemas::DEFAULT_MAX_BYTES) {
        let again = codec::to_xml(&envelope);
        let back = codec::from_xml(again.as_bytes(), usize::MAX).expect("what the codec writes, it reads");
        assert_eq!(back, envelope, "the round trip keeps the envelope");
    }
});
