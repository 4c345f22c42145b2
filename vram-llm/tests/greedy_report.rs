//! The `greedy_report` example run as `cargo xtask llama-cpp` and `cargo
//! xtask bench` run it: a tiny llama GGUF with a byte-level BPE tokenizer and
//! a ChatML template, answered by the sealed engine and by candle's stock
//! model on the unsealed file, the two JSON reports compared.
//!
//! `cargo test -p vram-llm` builds the example beside this test; a run that
//! selects this test alone may not, and then says so on stderr.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stderr,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

mod common;
mod scripted;

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::quantized::gguf_file;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;
use common::{tiny_llama, Tiny, TINY};
use serde_json::Value;

/// The example's binary: beside this test's directory (`examples/`), under
/// its plain name or, where cargo keeps build outputs apart from the final
/// ones, under a hashed name; the one that answers as greedy_report does.
fn example() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.parent()?.join("examples");
    let mut candidates = vec![dir.join(format!("greedy_report{}", std::env::consts::EXE_SUFFIX))];
    let mut hashed: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with("greedy_report-") && !n.contains('.')
            })
        })
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .collect();
    hashed.sort();
    candidates.extend(hashed.into_iter().rev().map(|(_, p)| p));
    // A test-harness build of the example takes arguments as test filters;
    // the program itself refuses `--tokens 0` with its usage.
    let found = candidates.into_iter().find(|p| {
        Command::new(p)
            .args(["--tokens", "0"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stderr).contains("usage: greedy_report"))
    });
    if found.is_none() {
        eprintln!(
            "\n*** the greedy_report example is not built in {}: the greedy_report test did NOT run. \
             Run `cargo test -p vram-llm` (it builds the examples). ***\n",
            dir.display()
        );
        // CI builds the examples with the tests: there, a missing one is a
        // failure, not a skip.
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: the greedy_report example must be built beside the tests"
        );
    }
    found
}

/// A tiny llama (random Q8_0 weights) whose metadata also holds the
/// scripted tokenizer and chat template.
fn tiny_with_tokenizer() -> Vec<u8> {
    let vocab = scripted::tokens().len();
    let bytes = tiny_llama(Tiny { vocab, ..TINY }, GgmlDType::Q8_0, 11, &[]);
    let mut cursor = Cursor::new(bytes.as_slice());
    let content = gguf_file::Content::read(&mut cursor).unwrap();
    let mut metadata = content.metadata.clone();
    metadata.extend(scripted::metadata());
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let tensors: Vec<(String, QTensor)> = names
        .iter()
        .map(|n| {
            let t = content.tensor(&mut cursor, n, &Device::Cpu).unwrap();
            ((*n).clone(), t)
        })
        .collect();
    let md: Vec<(&str, &gguf_file::Value)> =
        metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(&mut out, &md, &ts).unwrap();
    out.into_inner()
}

fn report(example: &Path, dir: &Path, engine: &str, repeat: &str) -> Value {
    let out = dir.join(format!("{engine}.json"));
    let status = Command::new(example)
        .args([
            "--engine", engine, "--tokens", "6", "--top", "8", "--repeat", repeat,
        ])
        .arg("--model")
        .arg(dir.join("tiny.gguf"))
        .arg("--prompts")
        .arg(dir.join("prompts.json"))
        .arg("--out")
        .arg(&out)
        .env("RAYON_NUM_THREADS", "1")
        .status()
        .unwrap();
    assert!(
        status.success(),
        "greedy_report --engine {engine}: {status}"
    );
    serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

#[test]
fn the_sealed_and_unsealed_reports_answer_the_same_prompts_alike() {
    let Some(example) = example() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tiny.gguf"), tiny_with_tokenizer()).unwrap();
    std::fs::write(
        dir.path().join("prompts.json"),
        r#"[{"name": "raw", "text": "hello world"},
            {"name": "chat", "messages": [{"role": "user", "content": "hi"}]}]"#,
    )
    .unwrap();
    let sealed = report(&example, dir.path(), "sealed", "2");
    let unsealed = report(&example, dir.path(), "unsealed", "1");
    assert!(sealed["engine"].as_str().unwrap().contains("sealed"));
    let ours = sealed["prompts"].as_array().unwrap();
    let stock = unsealed["prompts"].as_array().unwrap();
    assert_eq!(ours.len(), 4, "2 prompts, repeated twice");
    assert_eq!(stock.len(), 2);
    // The chat went through the file's template, with no BOS (the metadata
    // says add_bos_token = false).
    assert_eq!(
        ours[1]["prompt_text"],
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(ours[1]["prompt_tokens"][0], 1, "<|im_start|> first");
    for (a, b) in ours.iter().zip(stock) {
        let name = a["name"].as_str().unwrap();
        assert_eq!(a["prompt_tokens"], b["prompt_tokens"], "{name}");
        let generated = a["generated"].as_array().unwrap();
        assert!(!generated.is_empty() && generated.len() <= 6, "{name}");
        assert_eq!(a["generated"][0], b["generated"][0], "{name}");
        let top = a["top"].as_array().unwrap();
        assert_eq!(top.len(), 8, "{name}");
        // Largest first, and the first generated token is the largest.
        assert_eq!(top[0][0], a["generated"][0], "{name}");
        let logits: Vec<f64> = top.iter().map(|p| p[1].as_f64().unwrap()).collect();
        assert!(
            logits.windows(2).all(|w| w[0] >= w[1]),
            "{name}: {logits:?}"
        );
        // The logits at the stock model's top ids are close to its own.
        for pair in b["top"].as_array().unwrap().iter().take(5) {
            let id = &pair[0];
            let theirs = pair[1].as_f64().unwrap();
            let mine = top
                .iter()
                .find(|p| &p[0] == id)
                .map(|p| p[1].as_f64().unwrap());
            if let Some(mine) = mine {
                assert!((mine - theirs).abs() < 0.75, "{name}: {mine} vs {theirs}");
            }
        }
        assert!(a["time_to_first_token_s"].as_f64().unwrap() > 0.0);
        assert_eq!(
            a["decode_tokens"].as_u64().unwrap() as usize,
            generated.len() - 1
        );
    }
    // Greedy: the repeated prompts are answered the same way.
    assert_eq!(ours[0]["generated"], ours[2]["generated"]);
    assert_eq!(ours[1]["generated"], ours[3]["generated"]);
}

#[test]
fn bad_arguments_are_refused_with_the_usage() {
    let Some(example) = example() else {
        return;
    };
    let out = Command::new(&example)
        .args(["--engine", "fast"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sealed or unsealed"), "{stderr}");
    let out = Command::new(&example)
        .args([
            "--model",
            "/nonexistent.gguf",
            "--prompts",
            "/nonexistent.json",
            "--out",
            "/tmp/x.json",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.json"));
}
