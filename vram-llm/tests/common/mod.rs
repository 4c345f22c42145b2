//! Shared fixtures: a mock device under a manager, and tiny llama GGUF files
//! written with candle's own writer (`writer.rs`, shared with vram-serve's
//! tests).
#![allow(
    dead_code,
    unused_imports,
    unreachable_pub,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::Cursor;
use std::sync::Arc;

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use vram_audit::{AuditKey, AuditLog, AuditSink};
use vram_mock::MockDevice;
mod writer;
pub use writer::*;

use vram_residency::{ModelRef, SealRequest, SealedShard, VramConfig, VramManager, WorkerSecret};

pub struct Fixture {
    pub manager: Arc<VramManager>,
    pub device: Arc<MockDevice>,
    pub audit: Arc<AuditLog>,
    pub dir: tempfile::TempDir,
}

pub fn fixture() -> Fixture {
    let device = MockDevice::new(0, 256 << 20);
    let secret = WorkerSecret::from_bytes(zeroize::Zeroizing::new(vec![7u8; 32])).unwrap();
    let audit = Arc::new(
        AuditLog::in_memory(AuditKey::from_secret(&secret.audit_key()), "llm-test").unwrap(),
    );
    let sink: Arc<dyn AuditSink> = audit.clone();
    let dynamic: Arc<dyn vram_residency::Device> = device.clone();
    let manager = VramManager::new(
        VramConfig::builder(secret)
            .device(dynamic)
            .audit(sink)
            .leaf_size(vram_residency::LeafSize::new(4096).unwrap())
            .build(),
    )
    .unwrap();
    Fixture {
        manager: Arc::new(manager),
        device,
        audit,
        dir: tempfile::tempdir().unwrap(),
    }
}

impl Fixture {
    /// Writes `bytes` to a file and seals it as one shard, as the worker
    /// seals a GGUF file.
    pub fn seal(&self, name: &str, bytes: &[u8]) -> Arc<SealedShard> {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let request = SealRequest::new(ModelRef::new("test/tiny-llama").unwrap(), 0);
        Arc::new(
            self.manager
                .seal(&request, vram_residency::SealSource::file(&file))
                .unwrap(),
        )
    }
}

/// candle's own quantized llama over the same file: the reference.
pub fn reference(bytes: &[u8]) -> candle_transformers::models::quantized_llama::ModelWeights {
    let mut cursor = Cursor::new(bytes);
    let content = gguf_file::Content::read(&mut cursor).unwrap();
    candle_transformers::models::quantized_llama::ModelWeights::from_gguf(
        content,
        &mut cursor,
        &Device::Cpu,
    )
    .unwrap()
}

/// The reference's logits for `tokens` at `position`.
pub fn reference_logits(
    model: &mut candle_transformers::models::quantized_llama::ModelWeights,
    tokens: &[u32],
    position: usize,
) -> Vec<f32> {
    let input = Tensor::new(tokens, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    model
        .forward(&input, position)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

pub fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
