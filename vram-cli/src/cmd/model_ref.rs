//! Model references made from file names (`file:NAME`).

use vram_validation::ModelRef;

/// `file:NAME`, with the name percent-encoded where a model reference could
/// not hold it as written (a `%`, control or invisible characters), so that
/// any file name gives a reference that decodes back to it.
pub(crate) fn file_model_ref(name: &str) -> Result<ModelRef, vram_validation::ValidationError> {
    let plain = format!("file:{name}");
    if !name.contains('%') {
        if let Ok(r) = ModelRef::new(&plain) {
            return Ok(r);
        }
    }
    let mut encoded = String::from("file:");
    for c in name.chars() {
        if c == '%' || c.is_control() || !(c.is_ascii_graphic() || c == ' ') {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                encoded.push_str(&format!("%{b:02X}"));
            }
        } else {
            encoded.push(c);
        }
    }
    ModelRef::new(&encoded)
}
