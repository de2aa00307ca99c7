//! Archive manifests and files (`archive.package`, `archive.deliver`, `archive.attachment`): the
//! input is spliced into a valid package's body so that the fuzzer spends its time inside the
//! manifest (records, attachment references, base64 content, digests) rather than on the
//! envelope around it. Parsing never panics; what parses round-trips; an attachment's declared
//! digest and size are checked without panicking whatever they say.
#![no_main]

use libfuzzer_sys::fuzz_target;
use schemas::codec;
use schemas::messages::Body;

/// A valid `archive.package` envelope, up to and after its body's content (made once).
fn frame() -> &'static (String, String) {
    static FRAME: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    FRAME.get_or_init(|| {
        let sample = codec::to_xml(&schemas::samples::envelope(schemas::MessageType::ArchivePackage));
        let open = sample.find("<archivePackage>").expect("the sample's body") + "<archivePackage>".len();
        let close = sample.rfind("</archivePackage>").expect("the sample's body");
        (sample[..open].to_owned(), sample[close..].to_owned())
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(inner) = std::str::from_utf8(data) else { return };
    let (head, tail) = frame();
    for doc in [format!("{head}{inner}{tail}"), inner.to_owned()] {
        let Ok(envelope) = codec::from_xml(doc.as_bytes(), schemas::DEFAULT_MAX_BYTES) else { continue };
        if let Body::ArchiveAttachment(a) = &envelope.body {
            let _ = a.check();
        }
        let back = codec::from_xml(codec::to_xml(&envelope).as_bytes(), usize::MAX).expect("round trip");
        assert_eq!(back, envelope);
    }
});
