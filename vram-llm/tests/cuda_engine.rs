//! The engine on a CUDA device (feature `cuda-engine`): the model sealed in
//! device memory, each request computing on its lease's device addresses,
//! agrees with the CPU engine over the same file sealed on the mock, and a
//! request run after its lease has ended reads nothing.
//!
//! Needs a GPU. Without one each test says so loudly and returns; with
//! `VRAM_RESIDENCY_REQUIRE_CUDA=1` (the GPU bundle's `run.sh`) a missing
//! device is a failure.
#![cfg(feature = "cuda-engine")]
#![allow(
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    clippy::print_stderr,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::*;

use std::sync::Arc;

use candle_core::quantized::GgmlDType;
use candle_core::Device;
use vram_llm::{GgufSource, LlamaModel};
use vram_residency::{
    LeasePolicy, ModelRef, SealRequest, SealSource, SealedShard, VramConfig, VramManager,
    WorkerSecret,
};

/// A manager on CUDA device 0 and candle's device on it, or `None` (said
/// loudly) on a host without one.
fn cuda() -> Option<(Arc<VramManager>, Device)> {
    let require = std::env::var_os("VRAM_RESIDENCY_REQUIRE_CUDA").is_some();
    let skip = |why: String| {
        assert!(!require, "VRAM_RESIDENCY_REQUIRE_CUDA is set: {why}");
        eprintln!("\n*** SKIPPED: {why}; the CUDA engine is NOT exercised on this host ***\n");
        None
    };
    let devices = match vram_residency::cuda_devices() {
        Ok(d) => d,
        Err(e) => return skip(format!("no CUDA device ({e})")),
    };
    let compute = match vram_llm::cuda_device(0) {
        Ok(d) => d,
        Err(e) => return skip(format!("candle's CUDA device 0: {e}")),
    };
    let secret = WorkerSecret::from_bytes(zeroize::Zeroizing::new(vec![7u8; 32])).unwrap();
    let manager = VramManager::new(
        VramConfig::builder(secret)
            .device(Arc::clone(devices.first()?))
            .leaf_size(vram_residency::LeafSize::new(4096).unwrap())
            .build(),
    )
    .unwrap();
    Some((Arc::new(manager), compute))
}

fn seal(manager: &VramManager, bytes: &[u8]) -> Arc<SealedShard> {
    let request = SealRequest::new(ModelRef::new("test/tiny-llama").unwrap(), 0);
    Arc::new(manager.seal(&request, SealSource::Bytes(bytes)).unwrap())
}

/// The 5 largest logits of `v`, by id.
fn top5(v: &[f32]) -> Vec<usize> {
    let mut ids: Vec<usize> = (0..v.len()).collect();
    ids.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
    ids.truncate(5);
    ids
}

/// The largest difference over the CPU engine's top 5 logits.
fn top5_diff(cpu: &[f32], gpu: &[f32]) -> f32 {
    top5(cpu)
        .into_iter()
        .map(|i| (cpu[i] - gpu[i]).abs())
        .fold(0.0, f32::max)
}

#[test]
fn the_cuda_engine_agrees_with_the_cpu_engine() {
    let Some((gpu, compute)) = cuda() else { return };
    let f = fixture();
    // 7 tokens (one launch of the matrix-vector kernels) and 20 (three
    // chunks of at most 8 rows).
    let short: Vec<u32> = vec![1, 17, 42, 5, 88, 3, 60];
    let long: Vec<u32> = (0..20).map(|i| (i * 13 + 1) % 250).collect();
    for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0, GgmlDType::Q4_0] {
        let bytes = tiny_llama(TINY, dtype, 11, &[]);
        let policy = LeasePolicy::Sampled { leaves: 1 };
        let cpu = LlamaModel::load(
            f.manager.clone(),
            GgufSource::Shard(f.seal("tiny.gguf", &bytes)),
            policy,
        )
        .unwrap();
        let on_gpu = LlamaModel::load_on(
            Arc::clone(&gpu),
            GgufSource::Shard(seal(&gpu, &bytes)),
            policy,
            compute.clone(),
        )
        .unwrap();
        for prompt in [&short, &long] {
            let (mut a, _) = cpu.start().unwrap();
            let (mut b, _) = on_gpu.start().unwrap();
            let mut position = 0;
            let mut tokens = prompt.clone();
            for step in 0..4 {
                let x = a.forward(&tokens, position).unwrap();
                let y = b.forward(&tokens, position).unwrap();
                let (d, top) = (max_abs_diff(&x, &y), top5_diff(&x, &y));
                eprintln!(
                    "{dtype:?}, {} prompt tokens, step {step}: max |Δlogit| {d:.5}, top-5 {top:.5}",
                    prompt.len()
                );
                assert_eq!(argmax(&x), argmax(&y), "{dtype:?} step {step}");
                assert!(
                    top <= 0.75,
                    "{dtype:?} step {step}: top-5 logits differ by {top}"
                );
                position += tokens.len();
                tokens = vec![u32::try_from(argmax(&x)).unwrap()];
            }
        }
    }
}

#[test]
fn a_model_sealed_in_device_memory_is_refused_by_the_cpu_engine_at_load() {
    let Some((gpu, _)) = cuda() else { return };
    let bytes = tiny_llama(TINY, GgmlDType::Q4_1, 11, &[]);
    let e = LlamaModel::load(
        Arc::clone(&gpu),
        GgufSource::Shard(seal(&gpu, &bytes)),
        LeasePolicy::Full,
    )
    .unwrap_err();
    assert!(e.to_string().contains("cuda-engine"), "{e}");
    assert_eq!(e.class(), vram_llm::ErrorClass::Environment);
}
