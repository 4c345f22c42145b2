//! Embeddings computed on weights from a TensorSource: equal to candle's own
//! load of the file, pooled and normalised as the snapshot says, and clear
//! errors naming the tensor when the weights are not what the model needs.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use common::*;
use vram_embed::{
    Dtype, EmbedError, Embedder, ErrorClass, ModelSnapshot, Pooling, SafetensorsFile, TensorSource,
    TensorView,
};

const TEXTS: &[&str] = &[
    "The cat sat on the mat.",
    "hello world",
    "",
    "Sealed model weights, verified before use in GPU memory!",
    // Longer than MAX_SEQ tokens: truncated.
    "the dog the cat the mat the seal the model the weights the gpu the memory the day x y z",
    "unknown wörds become [UNK]",
];

fn snapshot(seed: u64) -> (tempfile::TempDir, ModelSnapshot, Embedder, SafetensorsFile) {
    let dir = tempfile::tempdir().unwrap();
    write_snapshot(dir.path(), seed);
    let snap = ModelSnapshot::open(dir.path()).unwrap();
    let embedder = Embedder::new(&snap).unwrap();
    let weights = SafetensorsFile::read(&snap.weights_path()).unwrap();
    (dir, snap, embedder, weights)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn the_snapshot_says_mean_pooling_normalised_and_truncation() {
    let (_dir, snap, embedder, _) = snapshot(1);
    assert_eq!(snap.pooling(), Pooling::Mean);
    assert!(snap.normalize());
    assert_eq!(snap.max_seq_length(), MAX_SEQ);
    assert_eq!(embedder.dimensions(), HIDDEN);
    let mut files = snap.inference_files().to_vec();
    files.sort();
    assert_eq!(
        files,
        [
            "1_Pooling/config.json",
            "config.json",
            "modules.json",
            "sentence_bert_config.json",
            "tokenizer.json"
        ]
    );
}

#[test]
fn embeddings_from_a_tensor_source_are_bitwise_candles_own_load_of_the_file() {
    let (_dir, snap, embedder, weights) = snapshot(2);
    let reference = candle_core::safetensors::load(snap.weights_path(), &Device::Cpu).unwrap();
    for text in TEXTS {
        let ours = embedder.embed(&weights, text).unwrap();
        let vb = VarBuilder::from_tensors(reference.clone(), DType::F32, &Device::Cpu);
        let theirs = embedder.embed_with_var_builder(vb, text).unwrap();
        assert_eq!(bits(&ours.vector), bits(&theirs.vector), "{text:?}");
        assert_eq!(ours.tokens, theirs.tokens);
        assert!(ours.tokens <= MAX_SEQ, "{text:?}: {} tokens", ours.tokens);
        // Computed on the source's bytes in place: no weight was copied.
        assert_eq!((ours.timings.tensors, ours.timings.bytes), (0, 0));
    }
    // The longest text was cut at max_seq_length, [CLS] and [SEP] kept.
    assert_eq!(embedder.embed(&weights, TEXTS[4]).unwrap().tokens, MAX_SEQ);
    assert_eq!(embedder.embed(&weights, "").unwrap().tokens, 2);
}

/// A source that counts the views it hands out.
struct Counted<'a> {
    inner: &'a SafetensorsFile,
    views: std::sync::atomic::AtomicUsize,
}

impl TensorSource for Counted<'_> {
    fn tensor(&self, name: &str) -> Result<TensorView<'_>, EmbedError> {
        self.views
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.tensor(name)
    }
}

#[test]
fn the_texts_of_one_request_compute_on_the_same_views() {
    let (_dir, _snap, embedder, weights) = snapshot(9);
    let counted = Counted {
        inner: &weights,
        views: std::sync::atomic::AtomicUsize::new(0),
    };
    let views = || counted.views.load(std::sync::atomic::Ordering::Relaxed);
    embedder.embed(&counted, TEXTS[0]).unwrap();
    let one_text = views();
    // Every weight the forward pass uses (all but the unused pooler), read
    // from the source for each text.
    assert!(one_text >= tensor_shapes().len() - 2, "{one_text}");
    let all = embedder.embed_all(&counted, TEXTS).unwrap();
    assert_eq!(all.len(), TEXTS.len());
    for (e, text) in all.iter().zip(TEXTS) {
        let alone = embedder.embed(&weights, text).unwrap();
        assert_eq!(bits(&e.vector), bits(&alone.vector), "{text:?}");
        assert_eq!(e.tokens, alone.tokens);
        assert_eq!((e.timings.tensors, e.timings.bytes), (0, 0));
    }
    assert!(embedder
        .embed_all(&weights, &[] as &[&str])
        .unwrap()
        .is_empty());
}

#[test]
fn vectors_are_l2_normalised_and_differ_between_texts() {
    let (_dir, _snap, embedder, weights) = snapshot(3);
    let vectors: Vec<Vec<f32>> = TEXTS
        .iter()
        .map(|t| embedder.embed(&weights, t).unwrap().vector)
        .collect();
    for v in &vectors {
        assert_eq!(v.len(), HIDDEN);
        assert!((norm(v) - 1.0).abs() < 1e-5, "norm {}", norm(v));
    }
    for (i, a) in vectors.iter().enumerate() {
        for b in &vectors[i + 1..] {
            assert_ne!(bits(a), bits(b));
        }
    }
    // Deterministic: the same text twice gives the same bits.
    let again = embedder.embed(&weights, TEXTS[0]).unwrap().vector;
    assert_eq!(bits(&again), bits(&vectors[0]));
}

/// The hidden states of candle's BERT, for checking pooling by hand.
fn hidden_states(snap: &ModelSnapshot, ids: &[u32]) -> Vec<Vec<f32>> {
    let config: Config = serde_json::from_str(
        &std::fs::read_to_string(snap.weights_path().with_file_name("config.json")).unwrap(),
    )
    .unwrap();
    let tensors = candle_core::safetensors::load(snap.weights_path(), &Device::Cpu).unwrap();
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let model = BertModel::load(vb, &config).unwrap();
    let ids = Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let types = ids.zeros_like().unwrap();
    let out = model.forward(&ids, &types, None).unwrap();
    out.squeeze(0).unwrap().to_vec2::<f32>().unwrap()
}

fn normalised(v: Vec<f64>) -> Vec<f64> {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

#[test]
fn pooling_follows_the_pooling_config() {
    // "hello world" is [CLS] hello world [SEP] = 2, 12, 13, 3.
    let ids = [2u32, 12, 13, 3];
    for (mode, expected_pooling) in [
        ("pooling_mode_mean_tokens", Pooling::Mean),
        ("pooling_mode_cls_token", Pooling::Cls),
        ("pooling_mode_max_tokens", Pooling::Max),
        ("pooling_mode_mean_sqrt_len_tokens", Pooling::MeanSqrtLen),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write_snapshot_with(dir.path(), &safetensors_bytes(&random_weights(4)), mode);
        let snap = ModelSnapshot::open(dir.path()).unwrap();
        assert_eq!(snap.pooling(), expected_pooling);
        let embedder = Embedder::new(&snap).unwrap();
        let weights = SafetensorsFile::read(&snap.weights_path()).unwrap();
        let got = embedder.embed(&weights, "Hello WORLD").unwrap();
        assert_eq!(got.tokens, 4);
        let h = hidden_states(&snap, &ids);
        let column = |j: usize| h.iter().map(move |row| f64::from(row[j]));
        let pooled: Vec<f64> = (0..HIDDEN)
            .map(|j| match expected_pooling {
                Pooling::Mean => column(j).sum::<f64>() / 4.0,
                Pooling::MeanSqrtLen => column(j).sum::<f64>() / 2.0,
                Pooling::Cls => f64::from(h[0][j]),
                Pooling::Max => column(j).fold(f64::MIN, f64::max),
                _ => unreachable!(),
            })
            .collect();
        let want = normalised(pooled);
        for (g, w) in got.vector.iter().zip(&want) {
            assert!((f64::from(*g) - w).abs() < 1e-5, "{mode}: {g} vs {w}");
        }
    }
}

#[test]
fn without_normalize_the_vector_is_the_plain_mean() {
    let dir = tempfile::tempdir().unwrap();
    write_snapshot(dir.path(), 5);
    std::fs::write(
        dir.path().join("modules.json"),
        MODULES_JSON.replace(
            r#",
  {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}"#,
            "",
        ),
    )
    .unwrap();
    let snap = ModelSnapshot::open(dir.path()).unwrap();
    assert!(!snap.normalize());
    let embedder = Embedder::new(&snap).unwrap();
    let weights = SafetensorsFile::read(&snap.weights_path()).unwrap();
    let got = embedder.embed(&weights, "hello world").unwrap().vector;
    let h = hidden_states(&snap, &[2, 12, 13, 3]);
    for (j, g) in got.iter().enumerate() {
        let mean = h.iter().map(|row| f64::from(row[j])).sum::<f64>() / 4.0;
        assert!((f64::from(*g) - mean).abs() < 1e-5);
    }
    assert!(
        (norm(&got) - 1.0).abs() > 1e-3,
        "not normalised: {}",
        norm(&got)
    );
}

/// A source that changes one tensor of another source.
struct Tampered<'a> {
    inner: &'a SafetensorsFile,
    name: &'static str,
    change: fn(TensorView<'_>) -> Option<TensorView<'_>>,
}

impl TensorSource for Tampered<'_> {
    fn tensor(&self, name: &str) -> Result<TensorView<'_>, EmbedError> {
        let view = self.inner.tensor(name)?;
        if name == self.name {
            (self.change)(view).ok_or_else(|| EmbedError::MissingTensor {
                name: name.to_owned(),
            })
        } else {
            Ok(view)
        }
    }
}

#[test]
fn a_missing_tensor_is_an_error_naming_it() {
    let (_dir, _snap, embedder, weights) = snapshot(6);
    let name = "encoder.layer.1.attention.self.key.weight";
    let source = Tampered {
        inner: &weights,
        name,
        change: |_| None,
    };
    let e = embedder.embed(&source, "hello").unwrap_err();
    assert!(
        matches!(&e, EmbedError::MissingTensor { name: n } if n == name),
        "{e:?}"
    );
    // The file without the tensor: the model's own request names it.
    let mut w = random_weights(6);
    w.retain(|(n, _, _)| n != name);
    let dir = tempfile::tempdir().unwrap();
    write_snapshot_with(
        dir.path(),
        &safetensors_bytes(&w),
        "pooling_mode_mean_tokens",
    );
    let file = SafetensorsFile::read(&dir.path().join("model.safetensors")).unwrap();
    let e = embedder.embed(&file, "hello").unwrap_err();
    assert!(
        matches!(&e, EmbedError::MissingTensor { name: n } if n == name),
        "{e:?}"
    );
    assert!(e.to_string().contains(name), "{e}");
    assert!(e.is_weights_error());
    assert_eq!(e.class(), ErrorClass::Integrity);
}

/// The intermediate weight's shape, flattened.
const FLAT: &[u64] = &[(INTERMEDIATE * HIDDEN) as u64];

#[test]
fn a_wrong_shape_or_size_or_dtype_is_an_error_naming_the_tensor() {
    let (_dir, _snap, embedder, weights) = snapshot(7);
    let name = "encoder.layer.0.intermediate.dense.weight";
    // Same bytes, flattened.
    let flat = Tampered {
        inner: &weights,
        name,
        change: |v| {
            Some(TensorView::host(
                v.name(),
                v.element_type(),
                FLAT,
                v.host_bytes()?,
            ))
        },
    };
    let e = embedder.embed(&flat, "hello").unwrap_err();
    match &e {
        EmbedError::TensorShape {
            name: n,
            expected,
            found,
        } => {
            assert_eq!(n, name);
            assert_eq!(expected, &[INTERMEDIATE, HIDDEN]);
            assert_eq!(found, &[INTERMEDIATE * HIDDEN]);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        e.to_string().contains(name) && e.to_string().contains("[64, 32]"),
        "{e}"
    );
    // Right shape, bytes cut short.
    let short = Tampered {
        inner: &weights,
        name,
        change: |v| {
            let bytes = v.host_bytes()?;
            Some(TensorView::host(
                v.name(),
                v.element_type(),
                v.shape(),
                &bytes[..bytes.len() - 4],
            ))
        },
    };
    let e = embedder.embed(&short, "hello").unwrap_err();
    assert!(
        matches!(&e, EmbedError::TensorSize { name: n, expected: 8192, found: 8188 } if n == name),
        "{e:?}"
    );
    // Same bytes read as F16: twice the elements the bytes hold for the shape.
    let half = Tampered {
        inner: &weights,
        name,
        change: |v| {
            Some(TensorView::host(
                v.name(),
                Dtype::F16,
                v.shape(),
                v.host_bytes()?,
            ))
        },
    };
    let e = embedder.embed(&half, "hello").unwrap_err();
    assert!(
        matches!(&e, EmbedError::TensorSize { name: n, expected: 4096, .. } if n == name),
        "{e:?}"
    );
    // A file whose tensor has a dtype this crate does not compute with:
    // the dtype of `name` rewritten in the header (I32 has F32's size).
    let mut file = safetensors_bytes(&random_weights(7));
    let header_len = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(file[8..8 + header_len].to_vec()).unwrap();
    let at = header.find(name).unwrap();
    let dtype_at = at + header[at..].find("\"F32\"").unwrap();
    file[8 + dtype_at..8 + dtype_at + 5].copy_from_slice(b"\"I32\"");
    let source =
        SafetensorsFile::from_reader(file.as_slice(), file.len() as u64, "i32.safetensors")
            .unwrap();
    let e = embedder.embed(&source, "hello").unwrap_err();
    assert!(
        matches!(&e, EmbedError::UnsupportedDtype { name: n, dtype } if n == name && dtype == "I32"),
        "{e:?}"
    );
}

#[test]
fn f16_weights_are_widened_to_f32_like_candles_loader() {
    let w = random_weights(8);
    let bytes = f16_safetensors_bytes(&w);
    let dir = tempfile::tempdir().unwrap();
    write_snapshot_with(dir.path(), &bytes, "pooling_mode_mean_tokens");
    let snap = ModelSnapshot::open(dir.path()).unwrap();
    let embedder = Embedder::new(&snap).unwrap();
    let ours = embedder
        .embed(
            &SafetensorsFile::read(&snap.weights_path()).unwrap(),
            "the cat",
        )
        .unwrap();
    let reference = candle_core::safetensors::load(snap.weights_path(), &Device::Cpu).unwrap();
    let vb = VarBuilder::from_tensors(reference, DType::F32, &Device::Cpu);
    let theirs = embedder.embed_with_var_builder(vb, "the cat").unwrap();
    assert_eq!(bits(&ours.vector), bits(&theirs.vector));
    // F16 matrices cannot be read as f32 in place: each is widened once
    // per request (counted on its first text), whatever its texts.
    let file = SafetensorsFile::read(&snap.weights_path()).unwrap();
    let all = embedder
        .embed_all(&file, &["the cat", "the dog", "the cat"])
        .unwrap();
    let matrices = tensor_shapes()
        .iter()
        .filter(|(n, s)| s.len() == 2 && n.contains("encoder.layer"))
        .count() as u64;
    assert_eq!(all[0].timings.tensors, matrices);
    assert!(all[0].timings.bytes > 0);
    assert!(all[1..]
        .iter()
        .all(|e| (e.timings.tensors, e.timings.bytes) == (0, 0)));
    assert_eq!(bits(&all[0].vector), bits(&ours.vector));
    assert_eq!(bits(&all[2].vector), bits(&ours.vector));
}

#[test]
fn f32_weights_not_aligned_for_f32_are_converted_and_give_the_same_vector() {
    // A tensor whose bytes start 2 bytes off a 4-byte boundary: the
    // safetensors header padded by 2 more bytes (JSON allows trailing
    // spaces), so every tensor's data moves by 2.
    let (_dir, _snap, embedder, weights) = snapshot(12);
    let aligned = embedder.embed(&weights, "the cat").unwrap();
    let bytes = safetensors_bytes(&random_weights(12));
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut shifted = Vec::with_capacity(bytes.len() + 2);
    shifted.extend_from_slice(&((n + 2) as u64).to_le_bytes());
    shifted.extend_from_slice(&bytes[8..8 + n]);
    shifted.extend_from_slice(b"  ");
    shifted.extend_from_slice(&bytes[8 + n..]);
    let source = SafetensorsFile::from_reader(
        shifted.as_slice(),
        shifted.len() as u64,
        "shifted.safetensors",
    )
    .unwrap();
    let moved = embedder.embed(&source, "the cat").unwrap();
    assert_eq!(bits(&moved.vector), bits(&aligned.vector));
    assert!(
        moved.timings.tensors > 0,
        "unaligned matrices are converted"
    );
}
