//! GGUF files through the `vram` binary: sealed as a file, and a corrupt
//! byte named by its tensor (`vram digest -c` with a leaves manifest).
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::OutputWithin as _;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn vram(dir: &Path) -> Command {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("vram"));
    c.env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("VRAM_SECRET_FILE")
        .env("VRAM_RESIDENCY_FORCE_MOCK", "1")
        .current_dir(dir)
        .stdin(Stdio::null());
    c
}

fn run(dir: &Path, args: &[&str]) -> Output {
    vram(dir).args(args).output_within(common::PATIENCE)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 131 % 251) as u8).wrapping_add(seed))
        .collect()
}

/// A GGUF v3 file (alignment 32): an architecture, a small vocabulary and
/// `extra` metadata, then the tensors `(name, ggml type, dims, bytes)`.
pub fn gguf(extra: &[(&str, u32)], tensors: &[(&str, u32, &[u64], Vec<u8>)]) -> Vec<u8> {
    let mut h = b"GGUF".to_vec();
    let s = |h: &mut Vec<u8>, text: &str| {
        h.extend_from_slice(&(text.len() as u64).to_le_bytes());
        h.extend_from_slice(text.as_bytes());
    };
    h.extend_from_slice(&3u32.to_le_bytes());
    h.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    h.extend_from_slice(&(2 + extra.len() as u64).to_le_bytes());
    s(&mut h, "general.architecture");
    h.extend_from_slice(&8u32.to_le_bytes());
    s(&mut h, "llama");
    s(&mut h, "tokenizer.ggml.tokens");
    h.extend_from_slice(&9u32.to_le_bytes());
    h.extend_from_slice(&8u32.to_le_bytes());
    h.extend_from_slice(&100u64.to_le_bytes());
    for i in 0..100 {
        s(&mut h, &format!("token-{i}"));
    }
    for (key, value) in extra {
        s(&mut h, key);
        h.extend_from_slice(&2u32.to_le_bytes());
        h.extend_from_slice(&(*value as u16).to_le_bytes());
    }
    let mut offset = 0u64;
    for (name, ty, dims, data) in tensors {
        s(&mut h, name);
        h.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in *dims {
            h.extend_from_slice(&d.to_le_bytes());
        }
        h.extend_from_slice(&ty.to_le_bytes());
        h.extend_from_slice(&offset.to_le_bytes());
        offset += (data.len() as u64).div_ceil(32) * 32;
    }
    h.resize(h.len().div_ceil(32) * 32, 0);
    for (_, _, _, data) in tensors {
        h.extend_from_slice(data);
        h.resize(h.len().div_ceil(32) * 32, 0);
    }
    h
}

const Q6_K: u32 = 14;
const Q4_1: u32 = 3;

/// A model: a Q4_1 embedding, and `blk.3.ffn_down.weight` (Q6_K, 126,000
/// bytes); returns the file and where that tensor starts.
fn model() -> (Vec<u8>, u64) {
    let ffn = pattern(600 * 210, 7);
    let file = gguf(
        &[],
        &[
            (
                "token_embd.weight",
                Q4_1,
                &[256, 64],
                pattern(64 * 8 * 20, 1),
            ),
            ("blk.3.ffn_down.weight", Q6_K, &[256, 600], ffn.clone()),
        ],
    );
    let start = file.windows(ffn.len()).position(|w| w == &ffn[..]).unwrap();
    (file, start as u64)
}

fn secret(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("worker.secret");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&p)
        .unwrap();
    f.write_all(b"0123456789abcdef0123456789abcdef-gguf-test")
        .unwrap();
    p
}

#[test]
fn a_gguf_file_is_sealed_and_a_corrupt_byte_is_named_by_its_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (file, ffn_start) = model();
    std::fs::write(d.join("model.gguf"), &file).unwrap();
    let secret = secret(d);

    let out = vram(d)
        .args(["seal", "model.gguf", "--json", "--secret-file"])
        .arg(&secret)
        .output_within(common::PATIENCE);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shards = v["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 1, "{v:#}");
    assert_eq!(
        shards[0]["vram_bytes"].as_u64(),
        Some(file.len() as u64),
        "{v:#}"
    );

    let out = run(
        d,
        &[
            "digest",
            "--json",
            "--leaves",
            "--leaf-size",
            "4KiB",
            "model.gguf",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    std::fs::write(d.join("MANIFEST.jsonl"), &out.stdout).unwrap();
    let inside = 100_000u64;
    let mut bad = file.clone();
    bad[(ffn_start + inside) as usize] ^= 0x40;
    std::fs::write(d.join("model.gguf"), &bad).unwrap();

    let out = run(d, &["digest", "-c", "--json", "MANIFEST.jsonl"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ranges = v["files"][0]["corrupt_ranges"].as_array().unwrap();
    assert_eq!(ranges.len(), 1, "{v:#}");
    let r = &ranges[0];
    assert_eq!(r["format"], "GGUF", "{v:#}");
    assert_eq!(r["header"], false, "{v:#}");
    assert_eq!(r["tensors"], serde_json::json!(["blk.3.ffn_down.weight"]));
    let t = &r["tensor_bytes"][0];
    assert_eq!(t["name"], "blk.3.ffn_down.weight");
    assert_eq!(t["len"], 126_000);
    let (start, end) = (t["start"].as_u64().unwrap(), t["end"].as_u64().unwrap());
    assert!(
        start <= inside && inside < end && end - start <= 4096,
        "{t}"
    );

    let out = run(d, &["digest", "-c", "MANIFEST.jsonl"]);
    let words = text(&out);
    assert!(words.contains("model.gguf: FAILED"), "{words}");
    assert!(words.contains(": tensors blk.3.ffn_down.weight"), "{words}");

    // A header byte: named as the GGUF header (the token list is in it).
    let at = file.windows(8).position(|w| w == b"token-42").unwrap();
    let mut bad = file.clone();
    bad[at] = b'T';
    std::fs::write(d.join("model.gguf"), &bad).unwrap();
    let out = run(d, &["digest", "-c", "MANIFEST.jsonl"]);
    let words = text(&out);
    assert!(words.contains(": GGUF header"), "{words}");
}

/// A directory holding one split GGUF model: all parts sealed as one model;
/// a missing or an extra part refused by name before any device work.
#[test]
fn a_directory_of_split_gguf_parts_is_one_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = d.join("model");
    std::fs::create_dir(&m).unwrap();
    let part = |no: u32, name: &str| {
        gguf(
            &[("split.no", no), ("split.count", 2)],
            &[(name, Q4_1, &[256, 4], pattern(4 * 8 * 20, no as u8))],
        )
    };
    std::fs::write(
        m.join("tiny-00001-of-00002.gguf"),
        part(0, "token_embd.weight"),
    )
    .unwrap();
    std::fs::write(m.join("tiny-00002-of-00002.gguf"), part(1, "output.weight")).unwrap();
    let secret = secret(d);
    let seal = |dir: &Path| {
        vram(d)
            .args(["seal", "--json", "--secret-file"])
            .arg(&secret)
            .arg(dir)
            .output_within(common::PATIENCE)
    };
    let out = seal(&m);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shards = v["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 2, "{v:#}");
    let files: Vec<&str> = shards.iter().map(|s| s["file"].as_str().unwrap()).collect();
    assert!(files[0].ends_with("tiny-00001-of-00002.gguf"), "{files:?}");
    assert!(files[1].ends_with("tiny-00002-of-00002.gguf"), "{files:?}");
    assert_eq!(shards[0]["set_id"], shards[1]["set_id"], "one set: {v:#}");

    // Any one part names the whole model (as `llama-server -m` takes the
    // first), whatever other models lie beside it.
    std::fs::write(
        m.join("other-00001-of-00002.gguf"),
        part(0, "token_embd.weight"),
    )
    .unwrap();
    std::fs::write(
        m.join("other-00002-of-00002.gguf"),
        part(1, "output.weight"),
    )
    .unwrap();
    let out = seal(&m.join("tiny-00002-of-00002.gguf"));
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shards = v["shards"].as_array().unwrap();
    let files: Vec<&str> = shards.iter().map(|s| s["file"].as_str().unwrap()).collect();
    assert_eq!(files.len(), 2, "{v:#}");
    assert!(files[0].ends_with("tiny-00001-of-00002.gguf"), "{files:?}");
    assert!(files[1].ends_with("tiny-00002-of-00002.gguf"), "{files:?}");
    assert_eq!(shards[0]["set_id"], shards[1]["set_id"], "one set: {v:#}");
    assert_eq!(v["model"]["model_ref"], "file:tiny", "{v:#}");
    // A part with other files, or with one file's digest: refused.
    let out = vram(d)
        .args(["seal", "--secret-file"])
        .arg(&secret)
        .arg(m.join("tiny-00001-of-00002.gguf"))
        .arg(m.join("other-00001-of-00002.gguf"))
        .output_within(common::PATIENCE);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("a part of a split GGUF model"),
        "{}",
        text(&out)
    );
    let out = vram(d)
        .args(["seal", "--expect-sha256", &"0".repeat(64), "--secret-file"])
        .arg(&secret)
        .arg(m.join("tiny-00001-of-00002.gguf"))
        .output_within(common::PATIENCE);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("without --expect-sha256"),
        "{}",
        text(&out)
    );
    std::fs::remove_file(m.join("other-00001-of-00002.gguf")).unwrap();
    std::fs::remove_file(m.join("other-00002-of-00002.gguf")).unwrap();

    std::fs::write(m.join("tiny-00003-of-00002.gguf"), part(2, "x")).unwrap();
    let out = seal(&m);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("tiny-00003-of-00002.gguf is not one of the 2 parts of tiny"),
        "{}",
        text(&out)
    );
    std::fs::remove_file(m.join("tiny-00003-of-00002.gguf")).unwrap();
    std::fs::remove_file(m.join("tiny-00002-of-00002.gguf")).unwrap();
    let out = seal(&m);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("part tiny-00002-of-00002.gguf is missing"),
        "{}",
        text(&out)
    );
}

/// `hf://ORG/NAME/FILE.gguf` from the hub cache: the one file sealed, its
/// blob's SHA-256 checked in the sealing pass (a changed blob is refused).
#[test]
fn a_gguf_file_of_a_cached_repository_is_sealed_by_name() {
    const COMMIT: &str = "89abcdef0123456789abcdef0123456789abcdef";
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (file, _) = model();
    let sha: String = ring::digest::digest(&ring::digest::SHA256, &file)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let repo = d.join("hub/models--org--tiny-GGUF");
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::create_dir_all(repo.join("snapshots").join(COMMIT)).unwrap();
    std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
    std::fs::write(repo.join("blobs").join(&sha), &file).unwrap();
    // Another quantization in the same repository: not sealed.
    std::fs::write(repo.join("blobs").join("0".repeat(64)), b"other").unwrap();
    for (name, blob) in [
        ("tiny.Q4_1.gguf", sha.clone()),
        ("tiny.Q8_0.gguf", "0".repeat(64)),
    ] {
        std::os::unix::fs::symlink(
            format!("../../blobs/{blob}"),
            repo.join("snapshots").join(COMMIT).join(name),
        )
        .unwrap();
    }
    let secret = secret(d);
    let seal = || {
        vram(d)
            .env("HF_HUB_CACHE", d.join("hub"))
            .env_remove("HF_HOME")
            .args([
                "seal",
                "hf://org/tiny-GGUF/tiny.Q4_1.gguf",
                "--json",
                "--secret-file",
            ])
            .arg(&secret)
            .output_within(common::PATIENCE)
    };
    let out = seal();
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shards = v["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 1, "{v:#}");
    assert_eq!(shards[0]["sha256"], sha.as_str(), "{v:#}");
    assert_eq!(
        shards[0]["model_ref"],
        format!("hf://org/tiny-GGUF@{COMMIT}/tiny.Q4_1.gguf").as_str(),
        "{v:#}"
    );
    assert_eq!(shards[0]["vram_bytes"].as_u64(), Some(file.len() as u64));

    // The blob changed behind the cache's back: its name no longer matches.
    let mut bad = file.clone();
    bad[5000] ^= 0x01;
    std::fs::write(repo.join("blobs").join(&sha), &bad).unwrap();
    let out = seal();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).to_lowercase().contains("sha-256") || text(&out).contains("sha256"),
        "{}",
        text(&out)
    );

    // A file the repository does not have.
    let out = vram(d)
        .env("HF_HUB_CACHE", d.join("hub"))
        .args(["seal", "hf://org/tiny-GGUF/tiny.F16.gguf", "--secret-file"])
        .arg(&secret)
        .output_within(common::PATIENCE);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("has no file tiny.F16.gguf"),
        "{}",
        text(&out)
    );
}

/// `hf://ORG/NAME/PART.gguf` of a split model in the hub cache: all its
/// parts sealed as one model, each part's blob SHA-256 checked in the
/// sealing pass (a changed part is refused), another quantization's parts
/// beside them left alone.
#[test]
fn a_part_of_a_cached_split_model_seals_all_its_parts() {
    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let part = |no: u32, name: &str| {
        gguf(
            &[("split.no", no), ("split.count", 2)],
            &[(name, Q4_1, &[256, 4], pattern(4 * 8 * 20, no as u8 + 3))],
        )
    };
    let sha = |bytes: &[u8]| -> String {
        ring::digest::digest(&ring::digest::SHA256, bytes)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let repo = d.join("hub/models--org--split-GGUF");
    let snap = repo.join("snapshots").join(COMMIT);
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
    let parts = [
        ("m-Q4_1-00001-of-00002.gguf", part(0, "token_embd.weight")),
        ("m-Q4_1-00002-of-00002.gguf", part(1, "output.weight")),
        ("m-Q8_0-00001-of-00002.gguf", part(0, "token_embd.weight")),
    ];
    let mut blobs = Vec::new();
    for (i, (name, bytes)) in parts.iter().enumerate() {
        // Distinct blobs even for equal bytes: the last file differs.
        let mut bytes = bytes.clone();
        if i == 2 {
            bytes.push(0);
        }
        let blob = sha(&bytes);
        std::fs::write(repo.join("blobs").join(&blob), &bytes).unwrap();
        std::os::unix::fs::symlink(format!("../../blobs/{blob}"), snap.join(name)).unwrap();
        blobs.push(blob);
    }
    let secret = secret(d);
    let seal = |reference: &str| {
        vram(d)
            .env("HF_HUB_CACHE", d.join("hub"))
            .env_remove("HF_HOME")
            .args(["seal", reference, "--json", "--secret-file"])
            .arg(&secret)
            .output_within(common::PATIENCE)
    };
    let out = seal("hf://org/split-GGUF/m-Q4_1-00002-of-00002.gguf");
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shards = v["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 2, "{v:#}");
    assert_eq!(shards[0]["sha256"], blobs[0].as_str(), "{v:#}");
    assert_eq!(shards[1]["sha256"], blobs[1].as_str(), "{v:#}");
    assert_eq!(shards[0]["set_id"], shards[1]["set_id"], "one set: {v:#}");
    assert_eq!(
        v["model"]["model_ref"],
        format!("hf://org/split-GGUF@{COMMIT}/m-Q4_1-00002-of-00002.gguf").as_str(),
        "{v:#}"
    );
    // The first part's blob changed behind the cache's back: refused.
    let mut bad = parts[0].1.clone();
    let at = bad.len() - 10;
    bad[at] ^= 0x01;
    std::fs::write(repo.join("blobs").join(&blobs[0]), &bad).unwrap();
    let out = seal("hf://org/split-GGUF/m-Q4_1-00002-of-00002.gguf");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("m-Q4_1-00001-of-00002.gguf"),
        "{}",
        text(&out)
    );
    // A part whose model lacks a part: refused by name before any device work.
    let out = seal("hf://org/split-GGUF/m-Q8_0-00001-of-00002.gguf");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("m-Q8_0-00002-of-00002.gguf is missing"),
        "{}",
        text(&out)
    );
}
