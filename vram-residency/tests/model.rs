//! A snapshot directory sealed as one model: its weights (a single file, or
//! the shards its index names) in device memory as one set, its small files
//! bound to those seals on the host; leased and read as one model.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    unused_qualifications
)]

mod common;
use common::*;
use std::path::Path;
use vram_residency::{LeasePolicy, ModelRef, SnapshotRequest, VramError};

const LEAF: u64 = 64 * 1024;

struct Snapshot {
    dir: tempfile::TempDir,
    first: Vec<u8>,
    second: Vec<u8>,
    /// The bytes of `encoder.1.weight` (in the second shard).
    encoder_1: Vec<u8>,
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A sentence-transformers snapshot in two shards, with an unlisted third
/// weights file and a `.bin` copy that are not part of the model.
fn sharded() -> Snapshot {
    let dir = tempfile::tempdir().unwrap();
    let encoder_1 = pattern((3 * LEAF) as usize, 7);
    let first = safetensors(&[
        ("embeddings.weight", "F32", &[4, 4], pattern(64, 1)),
        (
            "encoder.0.weight",
            "F16",
            &[LEAF],
            pattern((2 * LEAF) as usize, 2),
        ),
    ]);
    let second = safetensors(&[
        ("encoder.1.weight", "U8", &[3, LEAF], encoder_1.clone()),
        ("pooler.bias", "F32", &[8], pattern(32, 3)),
    ]);
    let d = dir.path();
    write(d, "model-00001-of-00002.safetensors", &first);
    write(d, "model-00002-of-00002.safetensors", &second);
    write(
        d,
        "model-00003-of-00003.safetensors",
        b"stale, not in the index",
    );
    write(d, "pytorch_model.bin", b"not sealed");
    write(
        d,
        "model.safetensors.index.json",
        br#"{"metadata":{},"weight_map":{
            "embeddings.weight":"model-00001-of-00002.safetensors",
            "encoder.0.weight":"model-00001-of-00002.safetensors",
            "encoder.1.weight":"model-00002-of-00002.safetensors",
            "pooler.bias":"model-00002-of-00002.safetensors"}}"#,
    );
    write(d, "config.json", br#"{"model_type":"bert"}"#);
    write(d, "tokenizer.json", br#"{"version":"1.0"}"#);
    write(
        d,
        "modules.json",
        br#"[{"path":"","type":"sentence_transformers.models.Transformer"},{"path":"1_Pooling","type":"sentence_transformers.models.Pooling"}]"#,
    );
    write(
        d,
        "1_Pooling/config.json",
        br#"{"pooling_mode_mean_tokens":true}"#,
    );
    Snapshot {
        dir,
        first,
        second,
        encoder_1,
    }
}

fn request(s: &Snapshot) -> SnapshotRequest {
    SnapshotRequest::new(s.dir.path(), ModelRef::new("test/sharded").unwrap(), 0)
}

#[test]
fn a_sharded_snapshot_is_one_model_and_its_tensors_lease_by_name() {
    let f = fixture(64 * MIB);
    let s = sharded();
    let model = f.manager.seal_model(&request(&s)).unwrap();
    assert_eq!(
        model.weight_files(),
        [
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors"
        ]
    );
    let files: Vec<&str> = model.files().iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        files,
        [
            "config.json",
            "tokenizer.json",
            "modules.json",
            "model.safetensors.index.json",
            "1_Pooling/config.json"
        ]
    );
    // One set: positions 0 and 1 of 2, one set id, one model reference.
    let shards = model.shards();
    assert_eq!(shards.len(), 2);
    for (i, shard) in shards.iter().enumerate() {
        assert_eq!(shard.position().index() as usize, i);
        assert_eq!(shard.position().total(), 2);
        assert_eq!(shard.set_id(), shards[0].set_id());
        // Each shard's seal names its file under the model's reference.
        assert_eq!(
            shard.model_ref().as_str(),
            format!("test/sharded/{}", model.weight_files()[i])
        );
    }
    assert!(model.has_file("1_Pooling/config.json") && model.has_file("tokenizer.json"));
    assert!(!model.has_file("README.md") && !model.has_file("model-00001-of-00002.safetensors"));
    assert_eq!(shards[0].vram_bytes(), s.first.len() as u64);
    assert_eq!(model.vram_bytes(), (s.first.len() + s.second.len()) as u64);
    assert_eq!(f.audit_count("vram_sealed"), 2);

    // Fresh: no full verification yet, so a `recent:` lease runs one on
    // every shard; right after it, a sample.
    let recent = LeasePolicy::RecentFull {
        max_age: std::time::Duration::from_secs(3600),
        leaves: 1,
    };
    for expect_full in [true, false] {
        let lease = f.manager.lease_model(&model, recent).unwrap();
        assert_eq!(lease.policy(), recent);
        for v in lease.verifications() {
            assert_eq!(
                v.policy == vram_residency::VerifyPolicy::Full,
                expect_full,
                "{v:?}"
            );
        }
    }
    let lease = f.manager.lease_model(&model, LeasePolicy::Full).unwrap();
    assert_eq!(lease.policy(), LeasePolicy::Full);
    let (leaves, bytes, _) = lease.verification_cost();
    assert_eq!(bytes, model.vram_bytes());
    assert!(leaves >= 2);
    let tensors = lease.tensors().unwrap();
    assert_eq!(tensors.len(), 4);
    assert!(!tensors.is_empty());
    let t = tensors.get("encoder.1.weight").unwrap();
    assert_eq!((t.dtype(), t.shape()), ("U8", &[3, LEAF][..]));
    assert_eq!(t.host_bytes().unwrap(), &s.encoder_1[..]);
    assert_eq!(tensors.get("embeddings.weight").unwrap().shape(), [4, 4]);
    let e = tensors.get("decoder.weight").unwrap_err();
    assert!(matches!(e, VramError::UnknownTensor { .. }), "{e}");
    drop(tensors);
    drop(lease);
    model.release().unwrap();
    f.assert_no_leaks();
    assert_eq!(f.audit_count("vram_deallocated"), 2);

    // Taken apart, the shards are the model's, in position order.
    let model = f.manager.seal_model(&request(&s)).unwrap();
    let ids: Vec<String> = model
        .shards()
        .iter()
        .map(|s| s.shard_id().to_string())
        .collect();
    let shards = model.into_shards();
    assert_eq!(
        shards
            .iter()
            .map(|s| s.shard_id().to_string())
            .collect::<Vec<_>>(),
        ids
    );
    assert_eq!(shards.len(), 2);
}

/// A small file may be up to MAX_BOUND_FILE_BYTES, not one byte more.
#[test]
fn bound_files_are_capped_at_64_mib_exactly() {
    let f = fixture(64 * MIB);
    let s = sharded();
    let tokenizer = s.dir.path().join("tokenizer.json");
    let set_len = |n: u64| {
        std::fs::File::options()
            .write(true)
            .truncate(true)
            .open(&tokenizer)
            .unwrap()
            .set_len(n)
            .unwrap();
    };
    // A large tokenizer (2 MiB) is fine; so is one of exactly the cap.
    set_len(2 * MIB);
    f.manager
        .seal_model(&request(&s))
        .unwrap()
        .release()
        .unwrap();
    set_len(vram_residency::MAX_BOUND_FILE_BYTES);
    let model = f.manager.seal_model(&request(&s)).unwrap();
    assert_eq!(
        f.manager
            .model_file(&model, "tokenizer.json")
            .unwrap()
            .len() as u64,
        vram_residency::MAX_BOUND_FILE_BYTES
    );
    model.release().unwrap();
    set_len(vram_residency::MAX_BOUND_FILE_BYTES + 1);
    let e = f.manager.seal_model(&request(&s)).unwrap_err();
    assert!(matches!(e, VramError::InvalidModel { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("tokenizer.json is larger than 67108864 bytes"),
        "{e}"
    );
    f.assert_no_leaks();
}

#[test]
fn a_sample_is_drawn_over_the_whole_model_at_least_one_leaf_per_shard() {
    let f = fixture(64 * MIB);
    let s = sharded();
    let model = f.manager.seal_model(&request(&s)).unwrap();
    let mut per_shard = [0u64; 2];
    for _ in 0..200 {
        let lease = f
            .manager
            .lease_model(&model, LeasePolicy::Sampled { leaves: 4 })
            .unwrap();
        let checked: Vec<u64> = lease.verifications().map(|v| v.leaves_checked).collect();
        assert!(checked.iter().all(|&n| n >= 1), "{checked:?}");
        let total: u64 = checked.iter().sum();
        // Four draws, and a shard that drew none still reads one.
        assert!((4..=5).contains(&total), "{checked:?}");
        per_shard[0] += checked[0];
        per_shard[1] += checked[1];
    }
    // Both shards are sampled well beyond their one-leaf floor.
    assert!(per_shard.iter().all(|&n| n > 250), "{per_shard:?}");
}

#[test]
fn small_files_are_given_only_as_sealed() {
    let f = fixture(64 * MIB);
    let s = sharded();
    let model = f.manager.seal_model(&request(&s)).unwrap();
    assert_eq!(
        f.manager.model_file(&model, "tokenizer.json").unwrap(),
        br#"{"version":"1.0"}"#
    );
    assert_eq!(
        f.manager
            .model_file(&model, "1_Pooling/config.json")
            .unwrap(),
        br#"{"pooling_mode_mean_tokens":true}"#
    );
    let e = f.manager.model_file(&model, "README.md").unwrap_err();
    assert!(matches!(e, VramError::UnknownModelFile { .. }), "{e}");
    let e = f.manager.model_file(&model, "../secret").unwrap_err();
    assert!(matches!(e, VramError::UnknownModelFile { .. }), "{e}");

    // The tokenizer edited on disk after sealing: refused, named, fatal.
    write(s.dir.path(), "tokenizer.json", br#"{"version":"1.1"}"#);
    let e = f.manager.model_file(&model, "tokenizer.json").unwrap_err();
    assert!(matches!(e, VramError::ModelFileChanged { .. }), "{e}");
    assert!(e.is_fatal());
    let text = e.to_string();
    assert!(
        text.contains("tokenizer.json changed since the model was sealed"),
        "{text}"
    );
    // Audited at once, critical, naming the file and both digests.
    let refused: Vec<String> = f
        .audit_lines()
        .into_iter()
        .filter(|l| l.contains("\"type\":\"model_file_refused\""))
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].contains("\"file\":\"tokenizer.json\"")
            && refused[0].contains(&vram_crypto::sha256(br#"{"version":"1.1"}"#).to_string()),
        "{}",
        refused[0]
    );
    // Same length, other bytes: the SHA-256 catches it.
    write(s.dir.path(), "config.json", br#"{"model_type":"bart"}"#);
    let e = f.manager.model_file(&model, "config.json").unwrap_err();
    assert!(matches!(e, VramError::ModelFileChanged { .. }), "{e}");
    // Gone: an I/O error, not audited as a refusal; neither is an unknown name.
    std::fs::remove_file(s.dir.path().join("modules.json")).unwrap();
    let e = f.manager.model_file(&model, "modules.json").unwrap_err();
    assert!(matches!(e, VramError::Io { .. }), "{e}");
    assert_eq!(
        f.audit_count("model_file_refused"),
        2,
        "tokenizer and config"
    );
    // The weights are unaffected: the model still leases.
    drop(f.manager.lease_model(&model, LeasePolicy::Full).unwrap());
}

#[test]
fn a_corrupt_byte_in_the_second_shard_is_named_by_its_tensor() {
    let f = fixture(64 * MIB);
    let s = sharded();
    let model = f.manager.seal_model(&request(&s)).unwrap();
    drop(f.manager.lease_model(&model, LeasePolicy::Full).unwrap());
    // The second shard is the last allocation.
    let start = s.second.len() as u64 - 32 - 3 * LEAF;
    f.device
        .flip_bits(f.last_buffer(), start + LEAF + 5, 0x01)
        .unwrap();
    let e = f
        .manager
        .lease_model(&model, LeasePolicy::Full)
        .unwrap_err();
    let VramError::IntegrityViolation { tensors, .. } = &e else {
        panic!("{e}");
    };
    assert!(
        tensors
            .iter()
            .any(|t| t.starts_with("encoder.1.weight, bytes ")),
        "{tensors:?}"
    );
    assert!(model.shards()[1].is_compromised());
    assert!(!model.shards()[0].is_compromised());
    let again = f
        .manager
        .lease_model(&model, LeasePolicy::Sampled { leaves: 1 })
        .unwrap_err();
    assert!(matches!(again, VramError::Compromised { .. }), "{again}");
    assert_eq!(f.audit_count("lease_refused"), 2);
}

#[test]
fn a_wrong_expected_digest_seals_nothing_and_releases_the_first_shard() {
    let f = fixture(64 * MIB);
    let s = sharded();
    let mut req = request(&s);
    req.expected_sha256.insert(
        "model-00002-of-00002.safetensors".into(),
        vram_residency::Sha256Hex::new(&"ab".repeat(32)).unwrap(),
    );
    let e = f.manager.seal_model(&req).unwrap_err();
    let VramError::InModelFile { file, source } = &e else {
        panic!("{e}");
    };
    assert_eq!(file, "model-00002-of-00002.safetensors");
    assert!(matches!(**source, VramError::DigestMismatch { .. }), "{e}");
    assert!(e.is_fatal(), "the class is the source's");
    assert!(
        e.to_string()
            .starts_with("model-00002-of-00002.safetensors: expected SHA-256"),
        "{e}"
    );
    f.assert_no_leaks();
    assert_eq!(f.audit_count("vram_sealed"), 1);
    assert_eq!(f.audit_count("vram_deallocated"), 2);

    // The right digest for each shard: sealed.
    let mut req = request(&s);
    for (name, bytes) in [
        ("model-00001-of-00002.safetensors", &s.first),
        ("model-00002-of-00002.safetensors", &s.second),
    ] {
        let hex = vram_crypto::sha256(bytes).to_string();
        req.expected_sha256
            .insert(name.into(), vram_residency::Sha256Hex::new(&hex).unwrap());
    }
    f.manager.seal_model(&req).unwrap().release().unwrap();

    // A digest for a file that is not one of the model's weights.
    let mut req = request(&s);
    req.expected_sha256.insert(
        "model-00003-of-00003.safetensors".into(),
        vram_residency::Sha256Hex::new(&"ab".repeat(32)).unwrap(),
    );
    let e = f.manager.seal_model(&req).unwrap_err();
    assert!(matches!(e, VramError::InvalidModel { .. }), "{e}");
    f.assert_no_leaks();
}

#[test]
fn a_model_from_another_key_is_refused_and_bad_snapshots_seal_nothing() {
    let f = fixture(64 * MIB);
    let other = fixture(64 * MIB);
    let s = sharded();
    let model = other.manager.seal_model(&request(&s)).unwrap();
    // Same secret, same key: the fixture's managers share it. A manager
    // with another secret does not accept the binding.
    let stranger = {
        let device: std::sync::Arc<dyn vram_core::Device> = vram_mock::MockDevice::new(0, 64 * MIB);
        let secret =
            vram_residency::WorkerSecret::from_bytes(zeroize::Zeroizing::new(vec![3u8; 32]))
                .unwrap();
        vram_residency::VramManager::new(
            vram_residency::VramConfig::builder(secret)
                .device(device)
                .build(),
        )
        .unwrap()
    };
    let e = stranger.model_file(&model, "config.json").unwrap_err();
    assert!(matches!(e, VramError::ModelBindingInvalid { .. }), "{e}");
    assert!(e.is_fatal());
    let e = stranger.lease_model(&model, LeasePolicy::Full).unwrap_err();
    assert!(matches!(e, VramError::ModelBindingInvalid { .. }), "{e}");
    f.manager.check_model(&model).unwrap();
    drop(model);

    // A tensor in two shards: the model has no tensors (which would an
    // engine load?), the bytes still lease.
    let dup = sharded();
    write(
        dup.dir.path(),
        "model-00002-of-00002.safetensors",
        &safetensors(&[("embeddings.weight", "F32", &[2], pattern(8, 9))]),
    );
    let model = f.manager.seal_model(&request(&dup)).unwrap();
    let lease = f.manager.lease_model(&model, LeasePolicy::Full).unwrap();
    let e = lease.tensors().unwrap_err();
    assert!(matches!(e, VramError::InvalidModel { .. }), "{e}");
    assert!(
        e.to_string().contains("embeddings.weight is in both"),
        "{e}"
    );
    drop(lease);
    drop(model);

    // No weights; an index naming a missing shard: nothing sealed.
    let empty = tempfile::tempdir().unwrap();
    write(empty.path(), "config.json", b"{}");
    let req = SnapshotRequest::new(empty.path(), ModelRef::new("m").unwrap(), 0);
    let e = f.manager.seal_model(&req).unwrap_err();
    assert!(matches!(e, VramError::InvalidModel { .. }), "{e}");
    let broken = sharded();
    std::fs::remove_file(broken.dir.path().join("model-00002-of-00002.safetensors")).unwrap();
    let e = f.manager.seal_model(&request(&broken)).unwrap_err();
    assert!(
        e.to_string().contains("model-00002-of-00002.safetensors"),
        "{e}"
    );
    f.assert_no_leaks();
}

#[test]
fn a_single_file_snapshot_is_a_model_of_one_shard() {
    let f = fixture(64 * MIB);
    let dir = tempfile::tempdir().unwrap();
    let weights = safetensors(&[("w", "U8", &[100], pattern(100, 4))]);
    write(dir.path(), "model.safetensors", &weights);
    write(dir.path(), "config.json", b"{}");
    let req = SnapshotRequest::new(dir.path(), ModelRef::new("single").unwrap(), 0);
    let model = f.manager.seal_model(&req).unwrap();
    assert_eq!(model.weight_files(), ["model.safetensors"]);
    assert_eq!(model.shards()[0].position().total(), 1);
    let lease = f
        .manager
        .lease_model(&model, LeasePolicy::default())
        .unwrap();
    assert_eq!(lease.leases().len(), 1);
    assert_eq!(lease.verification_cost().0, 1, "one leaf in all");
    assert_eq!(
        lease
            .tensors()
            .unwrap()
            .get("w")
            .unwrap()
            .host_bytes()
            .unwrap(),
        &pattern(100, 4)[..]
    );
}

/// Weights whose safetensors header names no tensor: a model with no tensors.
#[test]
fn a_model_without_tensors_has_an_empty_tensor_set() {
    let f = fixture(64 * MIB);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "model.safetensors", &safetensors(&[]));
    let req = SnapshotRequest::new(dir.path(), ModelRef::new("empty").unwrap(), 0);
    let model = f.manager.seal_model(&req).unwrap();
    let lease = f.manager.lease_model(&model, LeasePolicy::Full).unwrap();
    let tensors = lease.tensors().unwrap();
    assert!(tensors.is_empty());
    assert_eq!(tensors.len(), 0);
}

/// A small file swapped for a FIFO after sealing is refused at once (fatal,
/// audited), not waited on until someone writes to it.
#[test]
fn a_small_file_swapped_for_a_fifo_is_refused_not_waited_on() {
    let f = fixture(64 * MIB);
    let s = sharded();
    let model = f.manager.seal_model(&request(&s)).unwrap();
    let tokenizer = s.dir.path().join("tokenizer.json");
    std::fs::remove_file(&tokenizer).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&tokenizer)
        .status()
        .unwrap();
    assert!(made.success());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            tx.send(f.manager.model_file(&model, "tokenizer.json"))
                .unwrap();
        });
        let got = rx.recv_timeout(std::time::Duration::from_secs(10));
        if got.is_err() {
            // A reader stuck in open waits for a writer: be one, so that
            // the scope can end and the test fail rather than hang.
            let _ = std::fs::write(&tokenizer, b"x");
        }
        let e = got
            .expect("model_file still blocked on a FIFO after 10 s")
            .unwrap_err();
        assert!(matches!(e, VramError::ModelFileRejected { .. }), "{e}");
        assert!(e.is_fatal() && e.to_string().contains("FIFO"), "{e}");
    });
    assert_eq!(f.audit_count("model_file_refused"), 1);
}

/// A small file with an expected digest (a hub blob name) is checked in the
/// read that hashes it for the binding: the bytes bound are the bytes
/// checked; a mismatch seals nothing.
#[test]
fn a_small_file_is_checked_against_its_expected_digest_in_the_read_that_binds_it() {
    let f = fixture(64 * MIB);
    let s = sharded();
    let config = br#"{"model_type":"bert"}"#;
    let git_blob = |bytes: &[u8]| {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
        ctx.update(format!("blob {}\0", bytes.len()).as_bytes());
        ctx.update(bytes);
        let hex: String = ctx
            .finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        vram_hub::Expected::from_blob_name(&hex).unwrap()
    };
    let mut req = request(&s);
    req.expected_files
        .insert("config.json".into(), git_blob(config));
    let model = f.manager.seal_model(&req).unwrap();
    assert!(model.has_file("config.json"));
    model.release().unwrap();

    req.expected_files
        .insert("config.json".into(), git_blob(b"{\"model_type\":\"gpt2\"}"));
    let e = f.manager.seal_model(&req).unwrap_err();
    assert!(matches!(e, VramError::ModelFileRejected { .. }), "{e}");
    assert!(
        e.is_fatal() && e.to_string().contains("config.json") && e.to_string().contains("git-sha1"),
        "{e}"
    );
    f.assert_no_leaks();

    // A digest for a file the model does not bind is a caller's mistake.
    let mut req = request(&s);
    req.expected_files.insert("README.md".into(), git_blob(b""));
    let e = f.manager.seal_model(&req).unwrap_err();
    assert!(matches!(e, VramError::InvalidModel { .. }), "{e}");
}
