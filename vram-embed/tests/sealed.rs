//! Embeddings computed on sealed memory through verified leases: bitwise
//! what the file gives, a flipped bit caught and named at the next request,
//! eight threads serving while the scrubber runs.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use vram_audit::{AuditKey, AuditLog, AuditSink};
use vram_embed::{
    serve, EmbedError, Embedder, LeasedWeights, SafetensorsFile, SealedWeights, WeightsProvider,
};
use vram_mock::MockDevice;
use vram_residency::{
    LeasePolicy, ModelRef, ScrubConfig, Scrubber, SnapshotRequest, VramConfig, VramManager,
    WorkerSecret,
};

struct Sealed {
    _dir: tempfile::TempDir,
    embedder: Embedder,
    file: SafetensorsFile,
    weights: SealedWeights,
    device: Arc<MockDevice>,
    audit: Arc<AuditLog>,
}

fn sealed(seed: u64, policy: LeasePolicy) -> Sealed {
    let dir = tempfile::tempdir().unwrap();
    write_snapshot(dir.path(), seed);
    sealed_dir(dir, policy)
}

/// The snapshot in `dir` sealed as one model on a fresh mock.
fn sealed_dir(dir: tempfile::TempDir, policy: LeasePolicy) -> Sealed {
    let file = SafetensorsFile::read(&dir.path().join("model.safetensors"))
        .or_else(|_| SafetensorsFile::read(&dir.path().join("unsharded.safetensors")))
        .unwrap();
    let device = MockDevice::new(0, 64 << 20);
    let secret = WorkerSecret::from_bytes(zeroize::Zeroizing::new(vec![3u8; 32])).unwrap();
    let audit = Arc::new(
        AuditLog::in_memory(AuditKey::from_secret(&secret.audit_key()), "embed-test").unwrap(),
    );
    let sink: Arc<dyn AuditSink> = audit.clone();
    let dynamic: Arc<dyn vram_residency::Device> = device.clone();
    let manager = VramManager::new(
        VramConfig::builder(secret)
            .device(dynamic)
            .audit(sink)
            // Small leaves: a tiny model still has many.
            .leaf_size(vram_residency::LeafSize::new(4096).unwrap())
            .build(),
    )
    .unwrap();
    let request = SnapshotRequest::new(dir.path(), ModelRef::new("tiny-bert").unwrap(), 0);
    let model = manager.seal_model(&request).unwrap();
    let weights = SealedWeights::new(manager, model, policy);
    // The small files as they were bound to the seal.
    let embedder = Embedder::new(&weights.snapshot().unwrap()).unwrap();
    Sealed {
        _dir: dir,
        embedder,
        file,
        weights,
        device,
        audit,
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The byte offset of a tensor's data in the sealed file.
fn offset_of(name: &str, seed: u64) -> (u64, u64) {
    let weights = random_weights(seed);
    let bytes = safetensors_bytes(&weights);
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    let header: serde_json::Value =
        serde_json::from_slice(&bytes[8..8 + header_len as usize]).unwrap();
    let offsets = &header[name]["data_offsets"];
    (
        8 + header_len + offsets[0].as_u64().unwrap(),
        offsets[1].as_u64().unwrap() - offsets[0].as_u64().unwrap(),
    )
}

#[test]
fn embeddings_from_sealed_memory_are_bitwise_those_from_the_file() {
    let s = sealed(21, LeasePolicy::default());
    for text in [
        "The cat sat on the mat.",
        "hello world",
        "",
        "sealed weights in gpu memory",
    ] {
        let from_file = s.embedder.embed(&s.file, text).unwrap();
        let (from_lease, cost) = s
            .weights
            .with_weights(|source| {
                (
                    s.embedder.embed(source, text).unwrap(),
                    source.lease_cost().unwrap(),
                )
            })
            .unwrap();
        assert_eq!(
            bits(&from_lease.vector),
            bits(&from_file.vector),
            "{text:?}"
        );
        assert_eq!(from_lease.timings.tensors, from_file.timings.tensors);
        assert_eq!(
            (cost.policy.as_str(), cost.leaves_checked),
            ("sampled:4", 4)
        );
    }
    assert_eq!(s.weights.manager().metrics().leases_granted, 4);
}

/// A bit flipped in a tensor in device memory: the next request's lease is
/// refused with the tensor named, serving stops, the refusal is audited.
#[test]
fn a_flipped_bit_in_a_tensor_is_caught_named_and_nothing_more_is_served() {
    let s = sealed(22, LeasePolicy::Full);
    let name = "encoder.layer.1.attention.self.query.weight";
    let (start, len) = offset_of(name, 22);
    let input = "{\"text\": \"one\"}\n{\"text\": \"two\"}\n{\"text\": \"three\"}\n";
    // First request served; then the flip; then the next is refused.
    let mut out = Vec::new();
    let summary = serve(&s.embedder, &s.weights, &input.as_bytes()[..16], &mut out).unwrap();
    assert_eq!(summary.served, 1);
    let buffer = *s.device.live_buffers().last().unwrap();
    s.device.flip_bits(buffer, start + len / 2, 0x04).unwrap();
    let mut out = Vec::new();
    let stopped = serve(&s.embedder, &s.weights, input.as_bytes(), &mut out).unwrap_err();
    assert_eq!(stopped.summary.served, 0);
    let EmbedError::Lease { reason, integrity } = &stopped.error else {
        panic!("{}", stopped.error);
    };
    assert!(*integrity);
    assert!(reason.contains(name), "{reason}");
    assert!(reason.contains(&format!(" of {len}")), "{reason}");
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        text.lines().count(),
        1,
        "one error line, then nothing: {text}"
    );
    assert!(text.contains(name), "{text}");
    assert!(s.weights.shared_shards()[0].is_compromised());
    // Every later request too, whatever the policy.
    assert!(LeasedWeights::with_lease(
        s.weights.manager(),
        s.weights.model(),
        LeasePolicy::default(),
        |_| ()
    )
    .is_err());
    let records = s.audit.lines();
    assert!(records
        .iter()
        .any(|l| l.contains("\"type\":\"lease_refused\"") && l.contains(name)));
}

/// Eight threads serve on one sealed model while the scrubber sweeps it;
/// every embedding is bitwise the file's; a flip then stops them all.
#[test]
fn eight_threads_serve_while_the_scrubber_runs() {
    let s = sealed(23, LeasePolicy::Sampled { leaves: 2 });
    let want = s.embedder.embed(&s.file, "the cat sat").unwrap().vector;
    let shard = &s.weights.shared_shards()[0];
    let scrubber = Scrubber::start(
        s.weights.manager(),
        s.weights.shared_shards(),
        ScrubConfig::new(1 << 30),
    )
    .unwrap();
    let served = AtomicU64::new(0);
    let stopped = AtomicBool::new(false);
    std::thread::scope(|t| {
        for _ in 0..8 {
            t.spawn(|| {
                while !stopped.load(Ordering::Acquire) {
                    match s
                        .weights
                        .with_weights(|source| s.embedder.embed(source, "the cat sat").unwrap())
                    {
                        Ok(e) => {
                            // Before the flip every vector is the file's.
                            if !shard.is_compromised() && served.load(Ordering::Relaxed) < 40 {
                                assert_eq!(bits(&e.vector), bits(&want));
                            }
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            assert!(
                                matches!(
                                    e,
                                    EmbedError::Lease {
                                        integrity: true,
                                        ..
                                    }
                                ),
                                "{e}"
                            );
                            stopped.store(true, Ordering::Release);
                        }
                    }
                }
            });
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while served.load(Ordering::Relaxed) < 40 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            served.load(Ordering::Relaxed) >= 40,
            "the threads stopped serving"
        );
        let (start, len) = offset_of("encoder.layer.0.output.dense.weight", 23);
        let buffer = *s.device.live_buffers().last().unwrap();
        s.device.flip_bits(buffer, start + len - 1, 0x80).unwrap();
    });
    let stats = scrubber.stop();
    assert!(stats.leaves_checked > 0, "the scrubber ran: {stats:?}");
    assert!(shard.is_compromised());
}

/// The tiny BERT split in two shards named by `model.safetensors.index.json`
/// (the full file kept aside, unlisted, for the comparison).
fn write_sharded(dir: &std::path::Path, seed: u64) {
    write_snapshot(dir, seed);
    let weights = random_weights(seed);
    let (first, second) = weights.split_at(weights.len() / 2);
    let names = [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ];
    let mut map = serde_json::Map::new();
    for (part, name) in [first, second].into_iter().zip(names) {
        std::fs::write(dir.join(name), safetensors_bytes(part)).unwrap();
        for (tensor, ..) in part {
            map.insert(tensor.clone(), serde_json::Value::from(name));
        }
    }
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::json!({ "metadata": {}, "weight_map": map }).to_string(),
    )
    .unwrap();
    std::fs::rename(
        dir.join("model.safetensors"),
        dir.join("unsharded.safetensors"),
    )
    .unwrap();
}

/// A sharded snapshot is one model: its tensors come from both shards'
/// leases, and the embeddings are bitwise the unsharded file's.
#[test]
fn a_sharded_model_serves_the_same_embeddings() {
    let dir = tempfile::tempdir().unwrap();
    write_sharded(dir.path(), 24);
    let s = sealed_dir(dir, LeasePolicy::Sampled { leaves: 4 });
    assert_eq!(s.weights.model().shards().len(), 2);
    assert!(s
        .weights
        .model()
        .files()
        .iter()
        .any(|f| f.name == "model.safetensors.index.json"));
    for text in ["The cat sat on the mat.", "sharded and sealed"] {
        let from_file = s.embedder.embed(&s.file, text).unwrap();
        let (from_lease, cost) = s
            .weights
            .with_weights(|source| {
                (
                    s.embedder.embed(source, text).unwrap(),
                    source.lease_cost().unwrap(),
                )
            })
            .unwrap();
        assert_eq!(
            bits(&from_lease.vector),
            bits(&from_file.vector),
            "{text:?}"
        );
        assert_eq!(cost.policy, "sampled:4");
        assert!((4..=5).contains(&cost.leaves_checked), "{cost:?}");
    }
}

/// The tokenizer and configs are bound to the seal: one edited on disk after
/// sealing is refused (integrity), and the model is not built from it.
#[test]
fn a_tokenizer_edited_after_sealing_is_refused() {
    let s = sealed(25, LeasePolicy::default());
    let dir = s.weights.model().dir().to_owned();
    let tokenizer = std::fs::read_to_string(dir.join("tokenizer.json")).unwrap();
    std::fs::write(dir.join("tokenizer.json"), tokenizer.replace("cat", "dog")).unwrap();
    let e = s.weights.snapshot().unwrap_err();
    let EmbedError::Lease { reason, integrity } = &e else {
        panic!("{e}");
    };
    assert!(*integrity, "{e}");
    assert!(
        reason.contains("tokenizer.json changed since the model was sealed"),
        "{reason}"
    );
    // A pooling config removed: the same.
    std::fs::write(dir.join("tokenizer.json"), tokenizer).unwrap();
    std::fs::remove_file(dir.join("1_Pooling/config.json")).unwrap();
    assert!(s.weights.snapshot().is_err());
}
