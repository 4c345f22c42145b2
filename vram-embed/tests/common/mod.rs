//! A tiny BERT sentence-transformers snapshot written by the test itself:
//! random weights (safetensors crate), config, WordPiece tokenizer, modules
//! and pooling config. CI needs no download.
#![allow(
    dead_code,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::unwrap_used,
    clippy::indexing_slicing
)]

use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::Dtype;

pub(crate) const HIDDEN: usize = 32;
pub(crate) const LAYERS: usize = 2;
pub(crate) const HEADS: usize = 4;
pub(crate) const INTERMEDIATE: usize = 64;
pub(crate) const MAX_POSITIONS: usize = 64;
pub(crate) const MAX_SEQ: usize = 16;

pub(crate) const VOCAB: &[&str] = &[
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "cat", "dog", "sat", "on", "mat",
    "hello", "world", "seal", "model", "weights", "verified", "before", "use", "is", "in", "gpu",
    "memory", ".", ",", "!", "##s", "##ing", "##ed", "run", "good", "day", "x", "y", "z",
];

/// Deterministic pseudo-random numbers (xorshift64*), no rand crate needed.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    pub(crate) fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        // Uniform in [-1, 1).
        ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// Every tensor of the tiny BERT with its shape, in the naming of
/// all-MiniLM-L6-v2 (no `bert.` prefix), pooler included (unused).
pub(crate) fn tensor_shapes() -> Vec<(String, Vec<usize>)> {
    let h = HIDDEN;
    let mut t: Vec<(String, Vec<usize>)> = vec![
        (
            "embeddings.word_embeddings.weight".into(),
            vec![VOCAB.len(), h],
        ),
        (
            "embeddings.position_embeddings.weight".into(),
            vec![MAX_POSITIONS, h],
        ),
        ("embeddings.token_type_embeddings.weight".into(), vec![2, h]),
        ("embeddings.LayerNorm.weight".into(), vec![h]),
        ("embeddings.LayerNorm.bias".into(), vec![h]),
    ];
    for l in 0..LAYERS {
        let p = format!("encoder.layer.{l}");
        for m in ["query", "key", "value"] {
            t.push((format!("{p}.attention.self.{m}.weight"), vec![h, h]));
            t.push((format!("{p}.attention.self.{m}.bias"), vec![h]));
        }
        t.push((format!("{p}.attention.output.dense.weight"), vec![h, h]));
        t.push((format!("{p}.attention.output.dense.bias"), vec![h]));
        t.push((format!("{p}.attention.output.LayerNorm.weight"), vec![h]));
        t.push((format!("{p}.attention.output.LayerNorm.bias"), vec![h]));
        t.push((
            format!("{p}.intermediate.dense.weight"),
            vec![INTERMEDIATE, h],
        ));
        t.push((format!("{p}.intermediate.dense.bias"), vec![INTERMEDIATE]));
        t.push((format!("{p}.output.dense.weight"), vec![h, INTERMEDIATE]));
        t.push((format!("{p}.output.dense.bias"), vec![h]));
        t.push((format!("{p}.output.LayerNorm.weight"), vec![h]));
        t.push((format!("{p}.output.LayerNorm.bias"), vec![h]));
    }
    t.push(("pooler.dense.weight".into(), vec![h, h]));
    t.push(("pooler.dense.bias".into(), vec![h]));
    t
}

/// Random weights as (name, shape, little-endian f32 bytes); LayerNorm
/// weights near 1, everything else small.
pub(crate) fn random_weights(seed: u64) -> Vec<(String, Vec<usize>, Vec<u8>)> {
    let mut rng = Rng::new(seed);
    tensor_shapes()
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let layer_norm_weight = name.ends_with("LayerNorm.weight");
            let bytes = (0..n)
                .flat_map(|_| {
                    let r = rng.next_f32();
                    let v = if layer_norm_weight {
                        1.0 + 0.1 * r
                    } else {
                        0.5 * r
                    };
                    v.to_le_bytes()
                })
                .collect();
            (name, shape, bytes)
        })
        .collect()
}

/// Serialises weights with the safetensors crate.
pub(crate) fn safetensors_bytes(weights: &[(String, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let views: Vec<(String, TensorView<'_>)> = weights
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

/// The same weights as F16 (each value rounded), serialised.
pub(crate) fn f16_safetensors_bytes(weights: &[(String, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let halves: Vec<(String, Vec<usize>, Vec<u8>)> = weights
        .iter()
        .map(|(n, s, b)| {
            let h: Vec<u8> = b
                .chunks_exact(4)
                .flat_map(|c| {
                    half::f16::from_f32(f32::from_le_bytes(c.try_into().unwrap())).to_le_bytes()
                })
                .collect();
            (n.clone(), s.clone(), h)
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = halves
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F16, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

pub(crate) fn config_json() -> String {
    serde_json::json!({
        "architectures": ["BertModel"],
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": HIDDEN,
        "initializer_range": 0.02,
        "intermediate_size": INTERMEDIATE,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": MAX_POSITIONS,
        "model_type": "bert",
        "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "type_vocab_size": 2,
        "vocab_size": VOCAB.len(),
    })
    .to_string()
}

/// A BERT WordPiece tokenizer.json over [`VOCAB`], shaped like
/// all-MiniLM-L6-v2's (its truncation and fixed padding included, which the
/// embedder must override).
pub(crate) fn tokenizer_json() -> String {
    let vocab: serde_json::Map<String, serde_json::Value> = VOCAB
        .iter()
        .enumerate()
        .map(|(i, t)| ((*t).to_owned(), serde_json::json!(i)))
        .collect();
    let special = |id: usize| {
        serde_json::json!({"id": id, "special": true, "content": VOCAB[id], "single_word": false,
            "lstrip": false, "rstrip": false, "normalized": false})
    };
    serde_json::json!({
        "version": "1.0",
        "truncation": {"max_length": 128, "strategy": "LongestFirst", "stride": 0},
        "padding": {"strategy": {"Fixed": 128}, "direction": "Right", "pad_to_multiple_of": null,
            "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"},
        "added_tokens": [special(0), special(1), special(2), special(3), special(4)],
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
            "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 100, "vocab": vocab}
    })
    .to_string()
}

pub(crate) const MODULES_JSON: &str = r#"[
  {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
  {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
  {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
]"#;

pub(crate) fn pooling_json(mode: &str) -> String {
    let mut m = serde_json::json!({
        "word_embedding_dimension": HIDDEN,
        "pooling_mode_cls_token": false,
        "pooling_mode_mean_tokens": false,
        "pooling_mode_max_tokens": false,
        "pooling_mode_mean_sqrt_len_tokens": false,
    });
    m[mode] = serde_json::json!(true);
    m.to_string()
}

/// Writes the whole snapshot (mean pooling, normalised) into `dir`.
pub(crate) fn write_snapshot(dir: &Path, seed: u64) {
    write_snapshot_with(
        dir,
        &safetensors_bytes(&random_weights(seed)),
        "pooling_mode_mean_tokens",
    );
}

pub(crate) fn write_snapshot_with(dir: &Path, weights: &[u8], pooling_mode: &str) {
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    std::fs::write(dir.join("model.safetensors"), weights).unwrap();
    std::fs::write(dir.join("config.json"), config_json()).unwrap();
    std::fs::write(dir.join("tokenizer.json"), tokenizer_json()).unwrap();
    std::fs::write(dir.join("modules.json"), MODULES_JSON).unwrap();
    std::fs::write(
        dir.join("1_Pooling/config.json"),
        pooling_json(pooling_mode),
    )
    .unwrap();
    std::fs::write(
        dir.join("sentence_bert_config.json"),
        format!(r#"{{"max_seq_length": {MAX_SEQ}, "do_lower_case": false}}"#),
    )
    .unwrap();
}

/// The Euclidean norm.
pub(crate) fn norm(v: &[f32]) -> f64 {
    v.iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt()
}
