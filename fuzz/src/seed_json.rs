//! Writes the JSON form of the sample envelope of every message type into
//! `corpus/envelope_json/`, to seed the JSON target as `schemas/examples/` seeds the XML ones.

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/envelope_json");
    std::fs::create_dir_all(&dir).expect("corpus dir");
    for t in schemas::MessageType::ALL {
        let json = schemas::codec::to_json(&schemas::samples::envelope(*t));
        std::fs::write(dir.join(format!("{}.json", t.as_str())), json).expect("seed written");
    }
}
