//! The embedder on a CUDA device (feature `cuda-engine`): the snapshot
//! sealed in device memory, each request computing on its lease's device
//! addresses (cuBLAS on the leased weights, rows and norms copied), gives the
//! CPU embedder's embeddings on the same file (cosine >= 0.9999), for F32
//! and F16 weights; a weight read by a request is never copied whole; a byte
//! flipped in device memory is refused by the next lease, naming the tensor.
//!
//! Needs a GPU. Without one each test says so loudly and returns; with
//! `VRAM_RESIDENCY_REQUIRE_CUDA=1` (the GPU bundle's `run.sh`) a missing
//! device is a failure. (A request's weights borrow its lease's views, so a
//! request that outlives its lease does not compile.)
#![cfg(feature = "cuda-engine")]
#![allow(
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    clippy::print_stderr,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation
)]

mod common;
use common::*;

use std::sync::Arc;
use std::time::Instant;

use candle_core::Device;
use vram_embed::{EmbedError, Embedder, SafetensorsFile, SealedWeights, WeightsProvider};
use vram_residency::{
    LeasePolicy, ModelRef, SnapshotRequest, VramConfig, VramManager, WorkerSecret,
};

/// A manager on CUDA device 0 and candle's device on it, or `None` (said
/// loudly) on a host without one.
fn cuda() -> Option<(VramManager, Device)> {
    let require = std::env::var_os("VRAM_RESIDENCY_REQUIRE_CUDA").is_some();
    let skip = |why: String| {
        assert!(!require, "VRAM_RESIDENCY_REQUIRE_CUDA is set: {why}");
        eprintln!("\n*** SKIPPED: {why}; the CUDA embedder is NOT exercised on this host ***\n");
        None
    };
    let devices = match vram_residency::cuda_devices() {
        Ok(d) if !d.is_empty() => d,
        Ok(_) => return skip("no CUDA device".into()),
        Err(e) => return skip(format!("no CUDA device ({e})")),
    };
    let compute = match vram_embed::cuda_device(0) {
        Ok(d) => d,
        Err(e) => return skip(format!("candle's CUDA device 0: {e}")),
    };
    let secret = WorkerSecret::from_bytes(zeroize::Zeroizing::new(vec![5u8; 32])).unwrap();
    let manager = VramManager::new(
        VramConfig::builder(secret)
            .device(Arc::clone(devices.first()?))
            .leaf_size(vram_residency::LeafSize::new(4096).unwrap())
            .build(),
    )
    .unwrap();
    Some((manager, compute))
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    dot / (norm(a) * norm(b))
}

fn check(weights: &[u8], label: &str) {
    let Some((manager, compute)) = cuda() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    write_snapshot_with(dir.path(), weights, "pooling_mode_mean_tokens");
    let file = SafetensorsFile::read(&dir.path().join("model.safetensors")).unwrap();
    let request = SnapshotRequest::new(dir.path(), ModelRef::new("tiny-bert").unwrap(), 0);
    let model = manager.seal_model(&request).unwrap();
    let sealed = SealedWeights::new(manager, model, LeasePolicy::Sampled { leaves: 1 });
    let snapshot = sealed.snapshot().unwrap();
    let cpu = Embedder::new(&snapshot).unwrap();
    let gpu = Embedder::on(&snapshot, compute).unwrap();
    let texts = [
        "The cat sat on the mat.",
        "hello world",
        "",
        "sealed weights in gpu memory",
    ];
    for text in texts {
        let expected = cpu.embed(&file, text).unwrap();
        let got = sealed
            .with_weights(|w| gpu.embed(w, text))
            .unwrap()
            .unwrap();
        let c = cosine(&expected.vector, &got.vector);
        eprintln!("{label} {text:?}: cosine {c:.9}");
        assert!(c >= 0.9999, "{label} {text:?}: cosine {c}");
        assert_eq!(got.tokens, expected.tokens);
        // Nothing was materialised: the weights were computed on in place.
        assert_eq!(got.timings.tensors, 0, "{label}");
        assert_eq!(got.timings.bytes, 0, "{label}");
    }
    // Embeddings per second, whole requests (a lease each), this tiny model.
    let n = 200;
    let start = Instant::now();
    for _ in 0..n {
        sealed
            .with_weights(|w| gpu.embed(w, "sealed weights in gpu memory"))
            .unwrap()
            .unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{label}: {n} requests on CUDA in {secs:.3} s: {:.0} embeddings/s (tiny model)",
        f64::from(n) / secs
    );
}

#[test]
fn f32_weights_give_the_cpu_embeddings() {
    check(&safetensors_bytes(&random_weights(41)), "F32");
}

#[test]
fn f16_weights_give_the_cpu_embeddings() {
    check(&f16_safetensors_bytes(&random_weights(43)), "F16");
}

#[test]
fn the_cpu_engine_refuses_a_cuda_lease_and_the_cuda_engine_a_host_lease() {
    let Some((manager, compute)) = cuda() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    write_snapshot(dir.path(), 45);
    let request = SnapshotRequest::new(dir.path(), ModelRef::new("tiny-bert").unwrap(), 0);
    let model = manager.seal_model(&request).unwrap();
    let sealed = SealedWeights::new(manager, model, LeasePolicy::Full);
    let snapshot = sealed.snapshot().unwrap();
    let cpu = Embedder::new(&snapshot).unwrap();
    let e = sealed
        .with_weights(|w| cpu.embed(w, "hello"))
        .unwrap()
        .unwrap_err();
    assert!(e.to_string().contains("device memory"), "{e}");
    let gpu = Embedder::on(&snapshot, compute).unwrap();
    let file = SafetensorsFile::read(&dir.path().join("model.safetensors")).unwrap();
    let e = gpu.embed(&file, "hello").unwrap_err();
    assert!(e.to_string().contains("host memory"), "{e}");
    assert_eq!(e.class(), vram_embed::ErrorClass::Environment);
}

#[test]
fn a_byte_flipped_in_device_memory_is_refused_by_the_next_lease_naming_the_tensor() {
    let Some((_, compute)) = cuda() else {
        return;
    };
    // The backend's device itself, for its corruption hook.
    let device = vram_core::cuda::CudaDevice::open(0).unwrap();
    let secret = WorkerSecret::from_bytes(zeroize::Zeroizing::new(vec![5u8; 32])).unwrap();
    let dynamic: Arc<dyn vram_residency::Device> = device.clone();
    let manager = VramManager::new(VramConfig::builder(secret).device(dynamic).build()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_snapshot(dir.path(), 47);
    let request = SnapshotRequest::new(dir.path(), ModelRef::new("tiny-bert").unwrap(), 0);
    let model = manager.seal_model(&request).unwrap();
    let sealed = SealedWeights::new(manager, model, LeasePolicy::Full);
    let gpu = Embedder::on(&sealed.snapshot().unwrap(), compute).unwrap();
    sealed
        .with_weights(|w| gpu.embed(w, "hello"))
        .unwrap()
        .unwrap();
    let name = "encoder.layer.1.attention.self.query.weight";
    let bytes = safetensors_bytes(&random_weights(47));
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    let header: serde_json::Value =
        serde_json::from_slice(&bytes[8..8 + header_len as usize]).unwrap();
    let at = 8 + header_len + header[name]["data_offsets"][0].as_u64().unwrap() + 7;
    device.corrupt_one_byte_for_demo(at, 0x10).unwrap();
    let e = sealed.with_weights(|w| gpu.embed(w, "hello")).unwrap_err();
    let EmbedError::Lease { reason, integrity } = &e else {
        panic!("{e}");
    };
    assert!(*integrity, "{e}");
    assert!(reason.contains(name), "{reason}");
}
