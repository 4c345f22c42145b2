//! A llama GGUF split by llama.cpp's `gguf-split` into parts (one shard
//! each, sealed as one model) computes exactly what the whole file computes,
//! a corrupted tensor in a later part refuses the next request naming it,
//! and parts that do not make one model are refused at load, named.
#![allow(
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    clippy::print_stderr,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

mod common;
use common::*;

use std::sync::Arc;

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::GgmlDType;
use vram_llm::{ErrorClass, GgufSource, LlamaModel, LlmError};
use vram_residency::{LeasePolicy, ModelRef, SealedModel, SnapshotRequest, VramError};

const PROMPT: &[u32] = &[1, 17, 42, 5, 88, 3, 60];

/// Writes `parts` into a directory of their own and seals it as one model,
/// as `vram seal DIR` and `vram-serve --model DIR` do.
fn seal_parts(f: &Fixture, dir: &str, parts: &[Vec<u8>]) -> SealedModel {
    let dir = f.dir.path().join(dir);
    std::fs::create_dir(&dir).unwrap();
    for (i, bytes) in parts.iter().enumerate() {
        std::fs::write(dir.join(split_name("tiny", i, parts.len())), bytes).unwrap();
    }
    f.manager
        .seal_model(&SnapshotRequest::new(
            &dir,
            ModelRef::new("test/tiny-split").unwrap(),
            0,
        ))
        .unwrap()
}

/// Logits of the prompt and two greedy decode steps.
fn run(model: &LlamaModel) -> Vec<Vec<f32>> {
    let (mut request, _) = model.start().unwrap();
    let mut out = vec![request.forward(PROMPT, 0).unwrap()];
    for position in PROMPT.len()..PROMPT.len() + 2 {
        let next = u32::try_from(argmax(out.last().unwrap())).unwrap();
        out.push(request.forward(&[next], position).unwrap());
    }
    out
}

#[test]
fn a_split_model_computes_what_the_whole_file_computes() {
    let f = fixture();
    let shape = Tiny {
        tied: false,
        ..TINY
    };
    let bytes = tiny_llama(shape, GgmlDType::Q4_1, 31, &[]);
    let whole = LlamaModel::load(
        f.manager.clone(),
        GgufSource::Shard(f.seal("tiny.gguf", &bytes)),
        LeasePolicy::Sampled { leaves: 1 },
    )
    .unwrap();
    let expected = run(&whole);
    for parts in [2, 3] {
        let model = seal_parts(&f, &format!("split{parts}"), &split_gguf(&bytes, parts));
        assert_eq!(model.shards().len(), parts);
        let split = LlamaModel::load(
            f.manager.clone(),
            GgufSource::Model(Arc::new(model)),
            LeasePolicy::Sampled { leaves: 1 },
        )
        .unwrap();
        assert_eq!(split.vocab_size(), whole.vocab_size());
        assert_eq!(split.config(), whole.config());
        // The same engine on the same bytes: bit for bit.
        assert_eq!(run(&split), expected, "{parts} parts");
    }
}

#[test]
fn a_corrupted_tensor_in_a_later_part_refuses_the_next_request_naming_it() {
    let f = fixture();
    let bytes = tiny_llama(TINY, GgmlDType::Q8_0, 33, &[]);
    let parts = split_gguf(&bytes, 3);
    let model = Arc::new(seal_parts(&f, "split", &parts));
    let llama = LlamaModel::load(
        f.manager.clone(),
        GgufSource::Model(model.clone()),
        LeasePolicy::Full,
    )
    .unwrap();
    run(&llama);
    // The last part is the last allocation; a tensor it holds.
    let last = parts.last().unwrap();
    let name = "blk.1.ffn_down.weight";
    let offset = tensor_offset(last, name) + 3;
    let buffer = *f.device.live_buffers().last().unwrap();
    f.device.flip_bits(buffer, offset, 0x40).unwrap();
    let e = llama.start().map(|_| ()).unwrap_err();
    eprintln!("refusal: {e}");
    assert_eq!(e.class(), ErrorClass::Integrity, "{e}");
    assert!(
        matches!(e, LlmError::Vram(VramError::IntegrityViolation { .. })),
        "{e}"
    );
    assert!(e.to_string().contains(name), "{e}");
    assert!(model.shards()[2].is_compromised());
    assert!(!model.shards()[0].is_compromised());
    assert!(llama.start().is_err(), "refused for good");
}

#[test]
fn parts_that_are_not_one_model_are_refused_at_load_naming_why() {
    let f = fixture();
    let bytes = tiny_llama(TINY, GgmlDType::Q8_0, 35, &[]);
    let load = |dir: &str, parts: Vec<Vec<u8>>| {
        let model = seal_parts(&f, dir, &parts);
        LlamaModel::load(
            f.manager.clone(),
            GgufSource::Model(Arc::new(model)),
            LeasePolicy::Full,
        )
        .map(|_| ())
        .unwrap_err()
    };
    let cases: Vec<(&str, Vec<Vec<u8>>, &str)> = vec![
        (
            "count",
            split_gguf_with(&bytes, 2, |_, md| {
                md.retain(|(k, _)| k != "split.count");
                md.push(("split.count".into(), Value::U16(3)));
            }),
            "split.count is 3",
        ),
        (
            "order",
            split_gguf_with(&bytes, 2, |part, md| {
                md.retain(|(k, _)| k != "split.no");
                md.push(("split.no".into(), Value::U16(1 - part as u16)));
            }),
            "split.no is 1",
        ),
        (
            "unmarked",
            split_gguf_with(&bytes, 2, |part, md| {
                if part == 1 {
                    md.retain(|(k, _)| !k.starts_with("split."));
                }
            }),
            "without split.no",
        ),
        (
            "total",
            split_gguf_with(&bytes, 2, |part, md| {
                if part == 0 {
                    md.retain(|(k, _)| k != "split.tensors.count");
                    md.push(("split.tensors.count".into(), Value::I32(5)));
                }
            }),
            "split.tensors.count says",
        ),
    ];
    for (dir, parts, want) in cases {
        let e = load(dir, parts);
        eprintln!("{dir}: {e}");
        assert!(matches!(e, LlmError::Metadata(_)), "{dir}: {e}");
        assert!(e.to_string().contains(want), "{dir}: {e}");
    }
    // A tensor in two parts: the second part is the first part again.
    let mut parts = split_gguf(&bytes, 2);
    let first = split_gguf_with(&bytes, 2, |part, md| {
        if part == 0 {
            md.retain(|(k, _)| {
                !k.starts_with("split.") && !k.starts_with("llama.") && !k.starts_with("general.")
            });
            md.push(("split.no".into(), Value::U16(1)));
            md.push(("split.count".into(), Value::U16(2)));
        }
    });
    parts[1] = first[0].clone();
    let e = load("twice", parts);
    assert!(e.to_string().contains("in an earlier part too"), "{e}");
}
