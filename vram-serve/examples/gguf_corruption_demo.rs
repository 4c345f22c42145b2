//! A corrupt byte of a GGUF tensor caught before the next request computes
//! on it.
//!
//! ```text
//! cargo run -p vram-serve --example gguf_corruption_demo [-- [--device cuda:N] MODEL.gguf]
//! ```
//!
//! Writes a tiny llama GGUF on the fly (random weights, a byte-level BPE
//! tokenizer and a chat template in its header; or takes the GGUF file
//! given), seals it on the mock device (or, built with the feature
//! `demo-cuda`, on CUDA device N, the engine computing there on the leased
//! device memory) through the worker `vram-serve` builds, answers one chat request through `vram-llm` on a verified lease,
//! flips one byte of `blk.1.ffn_down.weight` in device memory behind the
//! seal's back, and shows the next request refused with the tensor named
//! (`blk.1.ffn_down.weight, bytes A..B of N`). Exit 0 only when the
//! corruption is caught; 1 otherwise.
// `dead_code`: tests/gguf_demo.rs includes this file and calls `run`, not `main`.
#![allow(
    dead_code,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::panic
)]

#[path = "../../vram-llm/tests/common/writer.rs"]
mod writer;

#[path = "../../vram-llm/tests/scripted/mod.rs"]
mod vocabulary;

use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use candle_core::quantized::gguf_file::{self, Value};
use vram_llm::{ChatMessage, ErrorClass, GenerateRequest, Prompt, SamplingParams};
use vram_residency::LeasePolicy;
use vram_serve::worker::{self, WorkerConfig};

/// The tensor whose byte is flipped.
pub(crate) const TENSOR: &str = "blk.1.ffn_down.weight";

/// The tiny model: two layers, the vocabulary of vram-llm's tests, and
/// feed-forward matrices of 2.5 MiB (Q4_1), wider than two of the mock's
/// 1 MiB leaves, so that the refusal names the corrupt tensor alone.
fn tiny_model(dir: &Path) -> PathBuf {
    let shape = writer::Tiny {
        vocab: 272,
        ffn: 65_536,
        ..writer::TINY
    };
    let mut extra: Vec<(String, Value)> = vocabulary::metadata().into_iter().collect();
    extra.sort_by(|a, b| a.0.cmp(&b.0));
    let bytes = writer::tiny_llama_with(
        shape,
        candle_core::quantized::GgmlDType::Q4_1,
        2026,
        &[],
        &extra,
    );
    let path = dir.join("tiny-chat.gguf");
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Where `tensor`'s bytes lie in the file: (start, length).
fn tensor_range(path: &Path, tensor: &str) -> Result<(u64, u64), String> {
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let content = gguf_file::Content::read(&mut file).map_err(|e| e.to_string())?;
    let info = content
        .tensor_infos
        .get(tensor)
        .ok_or_else(|| format!("the model has no tensor {tensor}"))?;
    let len = info.shape.elem_count() / info.ggml_dtype.block_size() * info.ggml_dtype.type_size();
    Ok((content.tensor_data_offset + info.offset, len as u64))
}

fn step(out: &mut dyn Write, ok: bool, name: &str, detail: &str) {
    let _ = writeln!(
        out,
        "[{}] {name:<24} {detail}",
        if ok { " ok " } else { "FAIL" }
    );
}

/// The demonstration, its steps written to `out`; `Ok` with the refusal's
/// message only when the corruption was caught and the tensor named.
///
/// # Errors
/// The step that did not behave, described.
pub(crate) fn run(
    model: Option<&Path>,
    device: &str,
    out: &mut dyn Write,
) -> Result<String, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = match model {
        Some(p) => p.to_path_buf(),
        None => {
            let p = tiny_model(dir.path());
            step(
                out,
                true,
                "write GGUF",
                &format!(
                    "{} (random weights, BPE tokenizer, chat template)",
                    p.display()
                ),
            );
            p
        }
    };
    let worker = worker::open(&WorkerConfig {
        device: device.into(),
        quiet: true,
        ..WorkerConfig::default()
    })
    .map_err(|e| e.to_string())?;
    let engine = vram_serve::text_engine(
        &worker,
        path.to_str().ok_or("a path that is not UTF-8")?,
        LeasePolicy::Full,
    )
    .map_err(|e| e.to_string())?;
    step(
        out,
        true,
        &format!("seal on {}", worker.device_kind()),
        &format!("{} sealed, verified in full", engine.model_id()),
    );

    let request = GenerateRequest {
        prompt: Prompt::Chat(vec![ChatMessage {
            role: "user".into(),
            content: "What is sealed memory?".into(),
        }]),
        max_tokens: 16,
        sampling: SamplingParams::default(),
        stop: Vec::new(),
    };
    let mut ignore = |_: &vram_llm::TokenDelta| ControlFlow::Continue(());
    let answer = engine
        .generate(&request, &mut ignore)
        .map_err(|e| format!("the first request failed: {e}"))?;
    step(
        out,
        true,
        "request 1 (lease ok)",
        &format!("{} tokens: {:?}", answer.completion_tokens, answer.text),
    );

    let (start, len) = tensor_range(&path, TENSOR)?;
    let offset = start + len / 2;
    worker
        .corrupt_latest(offset, 0x10)
        .map_err(|e| e.to_string())?;
    step(
        out,
        true,
        "flip one byte",
        &format!(
            "byte {offset} of the file ({TENSOR}, byte {} of {len}) in device memory",
            len / 2
        ),
    );

    match engine.generate(&request, &mut ignore) {
        Ok(o) => {
            step(
                out,
                false,
                "request 2 refused",
                &format!("it was answered: {:?}", o.text),
            );
            Err("the corrupt weights were computed on".into())
        }
        Err(e) if e.class() == ErrorClass::Integrity && e.to_string().contains(TENSOR) => {
            let message = e.to_string();
            step(out, true, "request 2 refused", &message);
            Ok(message)
        }
        Err(e) => {
            step(out, false, "request 2 refused", &e.to_string());
            Err(format!("refused, but not for the corrupt tensor: {e}"))
        }
    }
}

fn main() -> ExitCode {
    let mut device = "mock".to_owned();
    let mut model = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        if a == "--device" {
            match args.next().and_then(|d| d.into_string().ok()) {
                Some(d) => device = d,
                None => {
                    eprintln!("gguf_corruption_demo: --device needs mock or cuda:N");
                    return ExitCode::FAILURE;
                }
            }
        } else {
            model = Some(PathBuf::from(a));
        }
    }
    let mut stdout = std::io::stdout();
    match run(model.as_deref(), &device, &mut stdout) {
        Ok(_) => {
            println!("the corruption was caught before any computation used it");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gguf_corruption_demo: {e}");
            ExitCode::FAILURE
        }
    }
}
