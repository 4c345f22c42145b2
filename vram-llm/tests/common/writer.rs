//! A tiny llama GGUF file with random weights, written with candle's own
//! writer: what the tests of vram-llm and vram-serve (which includes this
//! file by path) build their models from. Metadata beyond the architecture
//! (a tokenizer, a chat template) is the caller's.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::Cursor;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

/// A deterministic stream of values in [-1, 1).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn tensor(&mut self, dims: &[usize], scale: f32, offset: f32) -> Tensor {
        let n: usize = dims.iter().product();
        let v: Vec<f32> = (0..n).map(|_| offset + scale * self.next()).collect();
        Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
    }
}

/// Shape of a tiny llama.
#[derive(Debug, Clone, Copy)]
pub struct Tiny {
    pub layers: usize,
    pub dim: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub ffn: usize,
    pub vocab: usize,
    pub context: u32,
    /// Without `output.weight`: the token embedding is the output head.
    pub tied: bool,
}

pub const TINY: Tiny = Tiny {
    layers: 2,
    dim: 64,
    heads: 4,
    kv_heads: 2,
    ffn: 128,
    vocab: 96,
    context: 128,
    tied: true,
};

/// A llama GGUF with random weights, every matrix of type `dtype`, norms
/// F32; tensors listed in `skip` are left out.
pub fn tiny_llama(shape: Tiny, dtype: GgmlDType, seed: u64, skip: &[&str]) -> Vec<u8> {
    tiny_llama_with(shape, dtype, seed, skip, &[])
}

/// [`tiny_llama`] with more metadata (a tokenizer, a chat template) after
/// the architecture's keys.
pub fn tiny_llama_with(
    shape: Tiny,
    dtype: GgmlDType,
    seed: u64,
    skip: &[&str],
    extra: &[(String, Value)],
) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let Tiny {
        layers,
        dim,
        heads,
        kv_heads,
        ffn,
        vocab,
        context,
        tied,
    } = shape;
    let kv_dim = dim / heads * kv_heads;
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let mut matrix = |name: String, dims: &[usize], rng: &mut Rng| {
        let t = rng.tensor(dims, 0.25, 0.0);
        tensors.push((name, QTensor::quantize(&t, dtype).unwrap()));
    };
    matrix("token_embd.weight".into(), &[vocab, dim], &mut rng);
    if !tied {
        matrix("output.weight".into(), &[vocab, dim], &mut rng);
    }
    for i in 0..layers {
        matrix(format!("blk.{i}.attn_q.weight"), &[dim, dim], &mut rng);
        matrix(format!("blk.{i}.attn_k.weight"), &[kv_dim, dim], &mut rng);
        matrix(format!("blk.{i}.attn_v.weight"), &[kv_dim, dim], &mut rng);
        matrix(format!("blk.{i}.attn_output.weight"), &[dim, dim], &mut rng);
        matrix(format!("blk.{i}.ffn_gate.weight"), &[ffn, dim], &mut rng);
        matrix(format!("blk.{i}.ffn_up.weight"), &[ffn, dim], &mut rng);
        matrix(format!("blk.{i}.ffn_down.weight"), &[dim, ffn], &mut rng);
    }
    let mut norms = vec!["output_norm.weight".to_string()];
    for i in 0..layers {
        norms.push(format!("blk.{i}.attn_norm.weight"));
        norms.push(format!("blk.{i}.ffn_norm.weight"));
    }
    for n in norms {
        let t = rng.tensor(&[dim], 0.2, 1.0);
        tensors.push((n, QTensor::quantize(&t, GgmlDType::F32).unwrap()));
    }
    tensors.retain(|(n, _)| !skip.contains(&n.as_str()));
    let metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("llama".into())),
        ("llama.block_count", Value::U32(layers as u32)),
        ("llama.embedding_length", Value::U32(dim as u32)),
        ("llama.feed_forward_length", Value::U32(ffn as u32)),
        ("llama.attention.head_count", Value::U32(heads as u32)),
        ("llama.attention.head_count_kv", Value::U32(kv_heads as u32)),
        (
            "llama.rope.dimension_count",
            Value::U32((dim / heads) as u32),
        ),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("llama.rope.freq_base", Value::F32(10_000.0)),
        ("llama.context_length", Value::U32(context)),
    ];
    let md: Vec<(&str, &Value)> = metadata
        .iter()
        .map(|(k, v)| (*k, v))
        .chain(extra.iter().map(|(k, v)| (k.as_str(), v)))
        .collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(&mut out, &md, &ts).unwrap();
    out.into_inner()
}

/// Where tensor `name`'s bytes start in the file.
pub fn tensor_offset(bytes: &[u8], name: &str) -> u64 {
    let mut cursor = Cursor::new(bytes);
    let content = gguf_file::Content::read(&mut cursor).unwrap();
    content.tensor_data_offset + content.tensor_infos[name].offset
}

/// The parts llama.cpp's `gguf-split` writes for the GGUF `bytes` split
/// into `parts` files, tensors in file order cut into runs of about equal
/// count: the first part holds every metadata key, each part `split.no`
/// (u16, from 0), `split.count` (u16) and, in the first, `split.tensors.count`
/// (i32). `edit` may change any part's keys before it is written.
pub fn split_gguf_with(
    bytes: &[u8],
    parts: usize,
    edit: impl Fn(usize, &mut Vec<(String, Value)>),
) -> Vec<Vec<u8>> {
    let mut cursor = Cursor::new(bytes);
    let content = gguf_file::Content::read(&mut cursor).unwrap();
    let mut names: Vec<(u64, String)> = content
        .tensor_infos
        .iter()
        .map(|(n, info)| (info.offset, n.clone()))
        .collect();
    names.sort();
    let per_part = names.len().div_ceil(parts);
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for (_, name) in &names {
        let t = content.tensor(&mut cursor, name, &Device::Cpu).unwrap();
        tensors.push((name.clone(), t));
    }
    let mut metadata: Vec<(String, Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    metadata.sort_by(|a, b| a.0.cmp(&b.0));
    (0..parts)
        .map(|part| {
            let mut md: Vec<(String, Value)> = if part == 0 {
                let mut md = metadata.clone();
                md.push((
                    "split.tensors.count".into(),
                    Value::I32(tensors.len() as i32),
                ));
                md
            } else {
                Vec::new()
            };
            md.push(("split.no".into(), Value::U16(part as u16)));
            md.push(("split.count".into(), Value::U16(parts as u16)));
            edit(part, &mut md);
            let mine: Vec<(&str, &QTensor)> = tensors
                .iter()
                .skip(part * per_part)
                .take(per_part)
                .map(|(k, v)| (k.as_str(), v))
                .collect();
            let md: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
            let mut out = Cursor::new(Vec::new());
            gguf_file::write(&mut out, &md, &mine).unwrap();
            out.into_inner()
        })
        .collect()
}

/// [`split_gguf_with`] with no edit.
pub fn split_gguf(bytes: &[u8], parts: usize) -> Vec<Vec<u8>> {
    split_gguf_with(bytes, parts, |_, _| {})
}

/// The name `gguf-split` gives part `part` (from 0) of `count`.
pub fn split_name(stem: &str, part: usize, count: usize) -> String {
    format!("{stem}-{:05}-of-{count:05}.gguf", part + 1)
}
