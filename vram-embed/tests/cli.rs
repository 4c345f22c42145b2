//! The `vram-embed` binary driven through real standard input and output.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use assert_cmd::Command;
use common::*;
use serde_json::Value;
use vram_embed::{Embedder, ModelSnapshot, SafetensorsFile};

/// The binary on the mock device (sealed weights in host memory), so the
/// tests run the same on machines with and without a GPU.
fn vram_embed() -> Command {
    let mut c = Command::cargo_bin("vram-embed").unwrap();
    c.args(["--device", "mock"]);
    c
}

fn lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8(stdout.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn vector(v: &Value) -> Vec<f32> {
    v["embedding"]
        .as_array()
        .unwrap_or_else(|| panic!("no embedding in {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn one_json_line_per_request_errors_included_and_serving_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    write_snapshot(dir.path(), 11);
    let input = concat!(
        "{\"text\": \"The cat sat on the mat.\"}\n",
        "not json\n",
        "\n",
        "{\"text\": \"hello\", \"extra\": 1}\n",
        "{\"text\": 7}\n",
        "{\"text\": \"hello world\"}", // no final newline
    );
    let out = vram_embed()
        .arg("--model")
        .arg(dir.path())
        .write_stdin(input)
        .assert()
        .success();
    let stdout = &out.get_output().stdout;
    let got = lines(stdout);
    assert_eq!(got.len(), 5, "{}", String::from_utf8_lossy(stdout));
    // The library's own embeddings, bit for bit after the JSON round trip
    // (serde_json writes the shortest f32 text that reads back the same).
    let snap = ModelSnapshot::open(dir.path()).unwrap();
    let embedder = Embedder::new(&snap).unwrap();
    let weights = SafetensorsFile::read(&snap.weights_path()).unwrap();
    for (line, text) in [(0, "The cat sat on the mat."), (4, "hello world")] {
        let want = embedder.embed(&weights, text).unwrap().vector;
        let v = vector(&got[line]);
        assert_eq!(v.len(), HIDDEN);
        assert_eq!(
            v.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
        assert!((norm(&v) - 1.0).abs() < 1e-5);
        // Computed on a lease: what its verification checked, reported. The
        // tiny model is two 64 KiB leaves (vram-embed's leaf size), and
        // sampled:1 re-read one of them.
        let lease = &got[line]["lease"];
        assert_eq!(lease["policy"], "sampled:1", "{}", got[line]);
        assert_eq!(lease["leaves_checked"], 1, "{}", got[line]);
        assert!(lease["verify_us"].is_u64(), "{}", got[line]);
        assert_eq!(got[line].as_object().unwrap().len(), 2, "{}", got[line]);
    }
    for line in [1, 2, 3] {
        let e = &got[line]["error"];
        assert_eq!(e["code"], 2, "{e}");
        assert_eq!(e["class"], "usage");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .starts_with("request: expected {\"text\": \"...\"}"),
            "{e}"
        );
    }
    assert!(got[2]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("unknown field `extra`"));
}

#[test]
fn a_request_on_broken_weights_gets_an_error_naming_the_tensor_and_nothing_after_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let name = "encoder.layer.1.output.dense.weight";
    let mut w = random_weights(12);
    w.retain(|(n, _, _)| n != name);
    write_snapshot_with(
        dir.path(),
        &safetensors_bytes(&w),
        "pooling_mode_mean_tokens",
    );
    let out = vram_embed()
        .arg("--model")
        .arg(dir.path())
        .write_stdin("{\"text\": \"one\"}\n{\"text\": \"two\"}\n")
        .assert()
        .code(1);
    let got = lines(&out.get_output().stdout);
    assert_eq!(got.len(), 1, "{got:?}");
    let e = &got[0]["error"];
    assert_eq!(e["class"], "integrity");
    assert_eq!(e["code"], 1);
    assert_eq!(
        e["message"],
        format!("tensor `{name}` is missing from the weights")
    );
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(stderr.contains(name), "{stderr}");
}

#[test]
fn startup_errors_are_json_too() {
    let dir = tempfile::tempdir().unwrap();
    // No snapshot at all: not a model (usage), said before any device work.
    let out = vram_embed()
        .arg("--model")
        .arg(dir.path())
        .write_stdin("")
        .assert()
        .code(2);
    let got = lines(&out.get_output().stdout);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["error"]["class"], "usage");
    let message = got[0]["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("neither model.safetensors nor model.safetensors.index.json"),
        "{message}"
    );
    // Weights but no modules.json: it was not bound, so it is not read.
    std::fs::write(dir.path().join("model.safetensors"), b"x").unwrap();
    let out = vram_embed().arg("--model").arg(dir.path()).assert().code(2);
    let got = lines(&out.get_output().stdout);
    let message = got[0]["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("modules.json: is not bound to the model's seal"),
        "{message}"
    );
    // A hostile weights file: refused at startup, integrity.
    write_snapshot(dir.path(), 13);
    let mut bad = u64::MAX.to_le_bytes().to_vec();
    bad.extend_from_slice(b"{}");
    std::fs::write(dir.path().join("model.safetensors"), bad).unwrap();
    let out = vram_embed()
        .arg("--model")
        .arg(dir.path())
        .write_stdin("{\"text\": \"x\"}\n")
        .assert()
        .code(1);
    let got = lines(&out.get_output().stdout);
    assert_eq!(got.len(), 1);
    let message = got[0]["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("does not hold a usable safetensors file")
            && message.contains("-byte limit"),
        "{message}"
    );
    // A module this crate does not implement: usage.
    std::fs::write(
        dir.path().join("modules.json"),
        MODULES_JSON.replace("Normalize", "Dense"),
    )
    .unwrap();
    let out = vram_embed().arg("--model").arg(dir.path()).assert().code(2);
    let got = lines(&out.get_output().stdout);
    assert!(
        got[0]["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("modules.json: "),
        "{got:?}"
    );
    // No --model: clap's usage error, on stderr and as JSON.
    let out = vram_embed().assert().code(2);
    let got = lines(&out.get_output().stdout);
    assert_eq!(got[0]["error"]["class"], "usage");
}

#[test]
fn the_leaf_size_sets_what_a_sampled_lease_re_reads() {
    let dir = tempfile::tempdir().unwrap();
    write_snapshot(dir.path(), 11);
    let request = "{\"text\": \"hello\"}\n";
    // 4 KiB leaves: the tiny model is about twenty of them; sampled:4
    // re-reads four, at most 16 KiB.
    let out = vram_embed()
        .args(["--leaf-size", "4KiB", "--lease", "sampled:4", "--model"])
        .arg(dir.path())
        .write_stdin(request)
        .assert()
        .success();
    let got = lines(&out.get_output().stdout);
    let lease = &got[0]["lease"];
    assert_eq!(lease["policy"], "sampled:4", "{lease}");
    assert_eq!(lease["leaves_checked"], 4, "{lease}");
    // (The model's last leaf is shorter than 4 KiB.)
    let bytes = lease["bytes_checked"].as_u64().unwrap();
    assert!(3 * 4096 < bytes && bytes <= 4 * 4096, "{lease}");
    // Not a power of two, or outside 4 KiB..1 GiB: a usage error.
    for bad in ["65535", "2KiB", "2GiB", "lots"] {
        let out = vram_embed()
            .args(["--leaf-size", bad, "--model"])
            .arg(dir.path())
            .assert()
            .code(2);
        let got = lines(&out.get_output().stdout);
        assert_eq!(got[0]["error"]["class"], "usage", "{bad}");
    }
}

/// Lays `snapshot` out as a Hugging Face hub cache under `cache`, as
/// `huggingface_hub` writes one: the weights as an LFS blob named by their
/// SHA-256, the small files named by their git blob id, relative links.
fn hub_cache(snapshot: &std::path::Path, cache: &std::path::Path, repo: &str) -> String {
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let model = cache.join(format!("models--{}", repo.replace('/', "--")));
    let snap = model.join("snapshots").join(commit);
    std::fs::create_dir_all(model.join("blobs")).unwrap();
    std::fs::create_dir_all(model.join("refs")).unwrap();
    std::fs::write(model.join("refs/main"), commit).unwrap();
    for name in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "modules.json",
        "1_Pooling/config.json",
        "sentence_bert_config.json",
    ] {
        let bytes = std::fs::read(snapshot.join(name)).unwrap();
        let blob = if name.ends_with(".safetensors") {
            ring::digest::digest(&ring::digest::SHA256, &bytes)
                .as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        } else {
            vram_hub::git_blob_id(&bytes[..], bytes.len() as u64)
                .unwrap()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        };
        std::fs::write(model.join("blobs").join(&blob), &bytes).unwrap();
        let link = snap.join(name);
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        let depth = name.matches('/').count();
        let up = "../".repeat(depth + 2);
        std::os::unix::fs::symlink(format!("{up}blobs/{blob}"), &link).unwrap();
    }
    format!("hf://{repo}")
}

/// `--model hf://ORG/NAME` serves a model from the local hub cache, sealed
/// with the SHA-256 its blob is named by; a corrupted blob seals nothing.
#[test]
fn a_cached_hub_model_is_served_by_name_and_a_corrupt_blob_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("snapshot");
    write_snapshot(&snapshot, 31);
    let cache = dir.path().join("hub");
    let reference = hub_cache(&snapshot, &cache, "org/tiny-bert");
    let out = vram_embed()
        .env("HF_HUB_CACHE", &cache)
        .args(["--model", &reference])
        .write_stdin("{\"text\": \"hello world\"}\n")
        .assert()
        .success();
    let got = lines(&out.get_output().stdout);
    assert_eq!(got.len(), 1);
    let snap = ModelSnapshot::open(&snapshot).unwrap();
    let embedder = Embedder::new(&snap).unwrap();
    let weights = SafetensorsFile::read(&snap.weights_path()).unwrap();
    let want = embedder.embed(&weights, "hello world").unwrap().vector;
    assert_eq!(vector(&got[0]), want);

    // Flip a byte of the weights blob: the seal's expected SHA-256 fails.
    let blobs = cache.join("models--org--tiny-bert/blobs");
    let blob = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::metadata(p).unwrap().len() == weights.len())
        .unwrap();
    let mut bytes = std::fs::read(&blob).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(&blob, &bytes).unwrap();
    let out = vram_embed()
        .env("HF_HUB_CACHE", &cache)
        .args(["--model", &reference])
        .write_stdin("{\"text\": \"hello world\"}\n")
        .assert()
        .code(1);
    let got = lines(&out.get_output().stdout);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["error"]["class"], "integrity");
    assert!(got[0].get("embedding").is_none());

    // A revision the cache does not hold: usage, naming what it holds.
    let out = vram_embed()
        .env("HF_HUB_CACHE", &cache)
        .args(["--model", "hf://org/tiny-bert@v9"])
        .write_stdin("")
        .assert()
        .code(2);
    let got = lines(&out.get_output().stdout);
    assert!(
        got[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("main"),
        "{got:?}"
    );
}

#[test]
fn a_request_may_carry_an_id_which_is_echoed_and_any_other_shape_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_snapshot(dir.path(), 21);
    let input = concat!(
        "{\"text\": \"hello world\", \"id\": \"req-1\"}\n",
        "{\"id\": 7, \"text\": \"hello world\"}\n",
        "[\"hello world\"]\n",
        "\"hello world\"\n",
        "{\"text\": \"hello world\", \"id\": [1]}\n",
        "{\"text\": \"hello world\", \"model\": \"m\"}\n",
        "{\"text\": \"hello world\"}\n",
    );
    let out = vram_embed()
        .arg("--model")
        .arg(dir.path())
        .write_stdin(input)
        .assert()
        .success();
    let got = lines(&out.get_output().stdout);
    assert_eq!(got.len(), 7, "{got:?}");
    assert_eq!(got[0]["id"], "req-1", "{}", got[0]);
    assert_eq!(got[1]["id"], 7, "{}", got[1]);
    assert_eq!(vector(&got[0]), vector(&got[1]));
    assert_eq!(vector(&got[0]), vector(&got[6]));
    assert!(got[6].get("id").is_none(), "{}", got[6]);
    for line in [2, 3, 4, 5] {
        let e = &got[line]["error"];
        assert_eq!(e["class"], "usage", "line {line}: {}", got[line]);
        assert_eq!(e["code"], 2, "line {line}: {}", got[line]);
        assert!(got[line].get("embedding").is_none(), "{}", got[line]);
    }
    let message = got[5]["error"]["message"].as_str().unwrap();
    assert!(message.contains("unknown field `model`"), "{message}");
    let message = got[4]["error"]["message"].as_str().unwrap();
    assert!(message.contains("`id`"), "{message}");
}

#[test]
fn a_text_cut_to_the_models_length_is_reported_with_its_token_count() {
    let dir = tempfile::tempdir().unwrap();
    write_snapshot(dir.path(), 22);
    let long = "the cat sat on the mat . ".repeat(10);
    let input = format!("{{\"text\": \"{long}\", \"id\": 1}}\n{{\"text\": \"the cat\"}}\n");
    let out = vram_embed()
        .arg("--model")
        .arg(dir.path())
        .write_stdin(input)
        .assert()
        .success();
    let got = lines(&out.get_output().stdout);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["truncated"], true, "{}", got[0]);
    assert_eq!(got[0]["tokens"], MAX_SEQ, "{}", got[0]);
    assert_eq!(vector(&got[0]).len(), HIDDEN);
    // A text that fits says nothing of truncation.
    assert!(got[1].get("truncated").is_none(), "{}", got[1]);
    assert!(got[1].get("tokens").is_none(), "{}", got[1]);
}

/// Standard input carries the requests: it cannot also be the secret.
#[test]
fn secret_file_from_standard_input_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    write_snapshot(dir.path(), 23);
    for given in ["-", "/dev/stdin"] {
        let out = vram_embed()
            .arg("--model")
            .arg(dir.path())
            .args(["--secret-file", given])
            .write_stdin("{\"text\": \"the cat sat on the mat, a request, not a secret\"}\n")
            .assert()
            .code(2);
        let got = lines(&out.get_output().stdout);
        assert_eq!(got.len(), 1, "{given}: {got:?}");
        assert_eq!(got[0]["error"]["class"], "usage", "{given}: {got:?}");
        let message = got[0]["error"]["message"].as_str().unwrap();
        assert!(message.contains("standard input"), "{message}");
    }
}

/// The embedder reads host bytes of its leased weights: on a CUDA device it
/// is refused at start, before sealing, never at the first request. (On a
/// machine without a GPU, `--device cuda` is refused by device selection.)
#[test]
fn a_cuda_device_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    write_snapshot(dir.path(), 24);
    let out = Command::cargo_bin("vram-embed")
        .unwrap()
        .args(["--device", "cuda", "--model"])
        .arg(dir.path())
        .write_stdin("{\"text\": \"hello\"}\n")
        .assert()
        .code(3);
    let got = lines(&out.get_output().stdout);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].get("embedding").is_none());
    let message = got[0]["error"]["message"].as_str().unwrap();
    if message.contains("no CUDA device can be used") {
        eprintln!("NOTE: no CUDA device here: the embedder's own refusal of CUDA is not reached");
    } else {
        assert!(
            message.contains("the BERT embedder cannot run on cuda"),
            "{message}"
        );
    }
}
