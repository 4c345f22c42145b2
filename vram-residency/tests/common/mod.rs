//! Shared fixtures for the facade's test suites.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    unused_qualifications
)]

use std::sync::Arc;
use vram_audit::{AuditKey, AuditLog, AuditSink, FailurePolicy, LogOptions};
use vram_core::Device;
use vram_crypto::LeafSize;
use vram_mock::{BufferId, MockDevice};
use vram_residency::{VramConfig, VramManager};
use vram_secrets::WorkerSecret;

pub const MIB: u64 = 1 << 20;

/// A fixed 32-byte worker secret, so tests can search output for its keys.
pub const SECRET: [u8; 32] = *b"test-worker-secret-0123456789abc";

pub fn secret() -> WorkerSecret {
    WorkerSecret::from_bytes(zeroize::Zeroizing::new(SECRET.to_vec())).unwrap()
}

pub struct Fixture {
    pub manager: VramManager,
    pub device: Arc<MockDevice>,
    pub audit: Arc<AuditLog>,
}

impl Fixture {
    /// Audit records written so far (JSON lines).
    pub fn audit_lines(&self) -> Vec<String> {
        self.audit.lines()
    }

    pub fn audit_count(&self, event_type: &str) -> usize {
        let needle = format!("\"type\":\"{event_type}\"");
        self.audit_lines()
            .iter()
            .filter(|l| l.contains(&needle))
            .count()
    }

    /// The most recent live allocation on the mock.
    pub fn last_buffer(&self) -> BufferId {
        *self
            .device
            .live_buffers()
            .last()
            .expect("a live allocation")
    }

    pub fn assert_no_leaks(&self) {
        assert_eq!(self.manager.used_vram(0), 0, "capacity still reserved");
        assert_eq!(
            self.device.live_allocations(),
            0,
            "device allocations leaked"
        );
        assert_eq!(self.device.live_bytes(), 0, "device bytes leaked");
    }
}

/// A manager over one mock device of `capacity` bytes, with 64 KiB leaves (so
/// small models still have many leaves) and an in-memory audit log.
pub fn fixture(capacity: u64) -> Fixture {
    fixture_with(capacity, LeafSize::new(64 * 1024).unwrap())
}

pub fn fixture_with(capacity: u64, leaf: LeafSize) -> Fixture {
    fixture_opts(capacity, leaf, LogOptions::default())
}

/// Every audit event fail-closed: no operation may succeed unaudited.
pub fn fixture_fail_closed(capacity: u64) -> Fixture {
    let options = LogOptions {
        failure: FailurePolicy::fail_closed(std::time::Duration::from_millis(20)),
        ..LogOptions::default()
    };
    fixture_opts(capacity, LeafSize::new(64 * 1024).unwrap(), options)
}

pub fn fixture_opts(capacity: u64, leaf: LeafSize, options: LogOptions) -> Fixture {
    let device = MockDevice::new(0, capacity);
    let s = secret();
    let audit = Arc::new(
        AuditLog::in_memory_with(
            AuditKey::from_bytes(*s.audit_key().expose_secret()),
            "test-worker",
            options,
        )
        .unwrap(),
    );
    let sink: Arc<dyn AuditSink> = audit.clone();
    let dynamic: Arc<dyn Device> = device.clone();
    let config = VramConfig::builder(s)
        .device(dynamic)
        .audit(sink)
        .worker_id("test-worker")
        .leaf_size(leaf)
        .staging_bytes(256 * 1024)
        .build();
    Fixture {
        manager: VramManager::new(config).unwrap(),
        device,
        audit,
    }
}

/// A safetensors file: each tensor `(name, dtype, shape, bytes)` in order.
pub fn safetensors(tensors: &[(&str, &str, &[u64], Vec<u8>)]) -> Vec<u8> {
    let mut entries = Vec::new();
    let mut offset = 0u64;
    for (name, dtype, shape, bytes) in tensors {
        let end = offset + bytes.len() as u64;
        entries.push(format!(
            r#""{name}":{{"dtype":"{dtype}","shape":{shape:?},"data_offsets":[{offset},{end}]}}"#
        ));
        offset = end;
    }
    let mut header = format!("{{{}}}", entries.join(","));
    // Pad the header to a multiple of 8, as writers do.
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    for (_, _, _, bytes) in tensors {
        file.extend_from_slice(bytes);
    }
    file
}

/// Deterministic non-trivial bytes.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 8) as u8))
        .collect()
}

/// A mock that reports itself as a CUDA device (with `uuid`, if given): what a
/// manager does with a device's kind and identity, tested without a GPU.
#[derive(Debug)]
pub struct LooksLikeCuda {
    inner: Arc<MockDevice>,
    info: vram_core::DeviceInfo,
}

impl LooksLikeCuda {
    pub fn device(capacity: u64, uuid: Option<[u8; 16]>) -> Arc<dyn Device> {
        let inner = MockDevice::new(0, capacity);
        let mut info = inner.info().clone();
        info.kind = vram_core::DeviceKind::Cuda;
        info.uuid = uuid;
        Arc::new(Self { inner, info })
    }
}

impl Device for LooksLikeCuda {
    fn info(&self) -> &vram_core::DeviceInfo {
        &self.info
    }
    fn memory_info(&self) -> Result<vram_core::MemoryInfo, vram_core::DeviceError> {
        self.inner.memory_info()
    }
    fn attributes(&self) -> Result<vram_core::DeviceAttributes, vram_core::DeviceError> {
        self.inner.attributes()
    }
    fn capabilities(&self) -> vram_core::DeviceCapabilities {
        self.inner.capabilities()
    }
    fn alloc(
        &self,
        bytes: u64,
    ) -> Result<Box<dyn vram_core::DeviceBuffer>, vram_core::DeviceError> {
        self.inner.alloc(bytes)
    }
}
