//! `Worker::seal` checks the SHA-256 the location carries for the very file
//! it seals: a hub snapshot's single `model.safetensors` and a GGUF file of
//! a hub repository alike, whatever the file is called. A blob whose bytes
//! are not what its name says is refused as integrity (exit 1), naming the
//! model and the file; a path taken as it is has no expected digest.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use vram_validation::{ModelRef, Sha256Hex};
use vram_worker::{locate, DeviceSpec, ModelLocation, SecretChoice, Worker, WorkerOptions};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn worker() -> Worker {
    Worker::open(&WorkerOptions {
        device: DeviceSpec::parse("mock").unwrap(),
        secret: SecretChoice::Ephemeral,
        audit_log: None,
        quiet: true,
    })
    .unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    vram_validation::hex::encode(&vram_crypto::sha256(bytes).0)
}

/// `CACHE/models--org--NAME/snapshots/COMMIT/FILE` linked to a blob named
/// by the SHA-256 of `named_for`, holding `bytes`. Returns the snapshot
/// directory.
fn cached_file(cache: &Path, repo: &str, file: &str, named_for: &[u8], bytes: &[u8]) -> PathBuf {
    let repo = cache.join(format!("models--org--{repo}"));
    let snapshot = repo.join("snapshots").join(COMMIT);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
    let sha = sha256_hex(named_for);
    std::fs::write(repo.join("blobs").join(&sha), bytes).unwrap();
    std::os::unix::fs::symlink(format!("../../blobs/{sha}"), snapshot.join(file)).unwrap();
    snapshot
}

/// Bytes that stand for a model: sealing does not read their format.
fn weights(seed: u8) -> Vec<u8> {
    (0..70_000u32)
        .map(|i| u8::try_from(i % 251).unwrap() ^ seed)
        .collect()
}

fn changed(bytes: &[u8]) -> Vec<u8> {
    let mut bad = bytes.to_vec();
    if let Some(last) = bad.last_mut() {
        *last ^= 0x01;
    }
    bad
}

#[test]
fn a_hub_single_safetensors_file_is_checked_against_its_blob_name() {
    let cache = tempfile::tempdir().unwrap();
    let good = weights(1);
    let snapshot = cached_file(
        cache.path(),
        "single",
        "model.safetensors",
        &good,
        &changed(&good),
    );
    let location = locate(snapshot.to_str().unwrap(), true).unwrap();
    assert_eq!(
        location.weights_sha256.as_ref().map(Sha256Hex::as_str),
        Some(sha256_hex(&good).as_str()),
        "the location carries the digest of the file it names"
    );
    let e = worker().seal(&location).unwrap_err();
    let text = e.to_string();
    assert_eq!(e.exit_code(), 1, "{text}");
    assert!(text.contains("expected SHA-256"), "{text}");
    assert!(
        text.contains(&format!("hf://org/single@{COMMIT}")),
        "the model is named: {text}"
    );
    assert!(
        text.contains("model.safetensors"),
        "the file is named: {text}"
    );
    // The same file as it should be: sealed.
    let blob = snapshot.join("model.safetensors").canonicalize().unwrap();
    std::fs::write(&blob, &good).unwrap();
    let shard = worker().seal(&location).unwrap();
    assert_eq!(shard.vram_bytes(), good.len() as u64);
}

#[test]
fn a_gguf_file_is_checked_against_its_own_digest_not_a_fixed_name() {
    // A GGUF file located as `hf://ORG/NAME/FILE.gguf` is: the blob itself,
    // its digest carried as the file's own. No `model.safetensors` anywhere.
    let cache = tempfile::tempdir().unwrap();
    let good = weights(2);
    let snapshot = cached_file(cache.path(), "tiny-GGUF", "tiny.Q4_1.gguf", &good, &good);
    let blob = snapshot.join("tiny.Q4_1.gguf").canonicalize().unwrap();
    let reference = format!("hf://org/tiny-GGUF@{COMMIT}/tiny.Q4_1.gguf");
    let mut location = ModelLocation::file(&blob, ModelRef::new(&reference).unwrap());
    assert_eq!(location.weights_sha256, None);
    location.weights_sha256 = Some(Sha256Hex::new(&sha256_hex(&good)).unwrap());
    worker().seal(&location).unwrap();

    std::fs::write(&blob, changed(&good)).unwrap();
    let e = worker().seal(&location).unwrap_err();
    let text = e.to_string();
    assert_eq!(e.exit_code(), 1, "{text}");
    assert!(text.contains("expected SHA-256"), "{text}");
    assert!(text.contains(&reference), "the file is named: {text}");
}

#[test]
fn a_path_taken_as_it_is_has_no_expected_digest() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("model.gguf");
    std::fs::write(&file, weights(3)).unwrap();
    let location = ModelLocation::file(&file, ModelRef::new("file:model").unwrap());
    assert_eq!(location.weights_sha256, None);
    assert_eq!(location.dir, dir.path());
    worker().seal(&location).unwrap();
    let location = locate(dir.path().to_str().unwrap(), true).unwrap();
    assert_eq!(location.weights_sha256, None);
    assert!(location.expected_sha256.is_empty());
}
