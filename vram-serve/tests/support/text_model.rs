//! The tests' text model: a tiny llama GGUF (random Q4_1 weights) whose
//! header carries real tokenizer metadata: a byte-level BPE vocabulary with
//! merges, BOS/EOS ids and a ChatML template, as SmolLM2's does.

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::GgmlDType;

use super::gguf_writer::{tensor_offset, tiny_llama_with, Tiny};
use super::vocabulary;

/// The model's context, in tokens.
pub(crate) const CONTEXT: u32 = 128;

/// Shape: two layers, and an output head as wide as the tokenizer's
/// vocabulary (269 tokens) and a little more.
pub(crate) const SHAPE: Tiny = Tiny {
    layers: 2,
    dim: 64,
    heads: 4,
    kv_heads: 2,
    ffn: 128,
    vocab: 272,
    context: CONTEXT,
    tied: true,
};

/// [`SHAPE`] with feed-forward matrices of 2.5 MiB each (Q4_1): more
/// than two of the mock's 1 MiB leaves, so that a leaf in the middle of one
/// lies in that tensor alone and a refusal names it and no other.
pub(crate) const WIDE: Tiny = Tiny {
    ffn: 65_536,
    ..SHAPE
};

/// The GGUF file's bytes.
pub(crate) fn gguf_bytes(seed: u64) -> Vec<u8> {
    gguf_bytes_of(SHAPE, seed)
}

/// The GGUF file's bytes, of `shape`.
pub(crate) fn gguf_bytes_of(shape: Tiny, seed: u64) -> Vec<u8> {
    let mut extra: Vec<(String, Value)> = vocabulary::metadata().into_iter().collect();
    extra.sort_by(|a, b| a.0.cmp(&b.0));
    tiny_llama_with(shape, GgmlDType::Q4_1, seed, &[], &extra)
}

/// Writes the model as `dir/NAME.gguf`; its bytes.
pub(crate) fn write(dir: &std::path::Path, name: &str, seed: u64) -> Vec<u8> {
    write_of(dir, name, SHAPE, seed)
}

/// Writes a model of `shape` as `dir/NAME.gguf`; its bytes.
pub(crate) fn write_of(dir: &std::path::Path, name: &str, shape: Tiny, seed: u64) -> Vec<u8> {
    let bytes = gguf_bytes_of(shape, seed);
    std::fs::write(dir.join(format!("{name}.gguf")), &bytes).unwrap();
    bytes
}

/// Where tensor `name`'s bytes start in the file, and how many there are.
pub(crate) fn tensor_range(bytes: &[u8], name: &str) -> (u64, u64) {
    let start = tensor_offset(bytes, name);
    let mut cursor = std::io::Cursor::new(bytes);
    let content = candle_core::quantized::gguf_file::Content::read(&mut cursor).unwrap();
    let info = &content.tensor_infos[name];
    let elements = info.shape.elem_count();
    let len = elements / info.ggml_dtype.block_size() * info.ggml_dtype.type_size();
    (start, len as u64)
}
