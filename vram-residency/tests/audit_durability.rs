//! A seal is a success only once its records are in the audit log; no audit
//! result is discarded; every `vram_allocated` has its `vram_deallocated`.
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
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use vram_audit::{
    verify_lines, AuditError, AuditKey, AuditLog, AuditSink, Backend, FailurePolicy, LogOptions,
    MemoryBackend,
};
use vram_core::Device;
use vram_crypto::LeafSize;
use vram_mock::MockDevice;
use vram_residency::SealSource;
use vram_residency::{ErrorClass, SealRequest, VramConfig, VramError, VramManager};
use vram_secrets::WorkerSecret;
use vram_validation::{ModelRef, Sha256Hex};

/// A log that refuses records of one event type while `failing` is set, like
/// a disk that fills up just then.
struct FailOn {
    inner: MemoryBackend,
    needle: String,
    failing: Arc<AtomicBool>,
}

impl Backend for FailOn {
    fn segment_len(&mut self) -> io::Result<u64> {
        self.inner.segment_len()
    }
    fn append(&mut self, line: &[u8]) -> io::Result<()> {
        let text = String::from_utf8_lossy(line);
        if self.failing.load(Ordering::SeqCst) && text.contains(&self.needle) {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
        }
        self.inner.append(line)
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.inner.truncate(len)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.inner.sync()
    }
    fn describe(&self) -> String {
        "/var/log/vram/test-audit.jsonl".into()
    }
}

struct Setup {
    manager: VramManager,
    device: Arc<MockDevice>,
    log: Arc<AuditLog>,
    memory: MemoryBackend,
    failing: Arc<AtomicBool>,
}

impl Setup {
    fn new(event_type: &str, fail_closed: bool) -> Self {
        let memory = MemoryBackend::new();
        let failing = Arc::new(AtomicBool::new(true));
        let backend = FailOn {
            inner: memory.clone(),
            needle: format!("\"type\":\"{event_type}\""),
            failing: Arc::clone(&failing),
        };
        let options = if fail_closed {
            LogOptions {
                failure: FailurePolicy::fail_closed(Duration::from_millis(5)),
                ..LogOptions::default()
            }
        } else {
            LogOptions::default()
        };
        let s = secret();
        let log = Arc::new(
            AuditLog::with_backend(
                Box::new(backend),
                AuditKey::from_bytes(*s.audit_key().expose_secret()),
                "test-worker",
                options,
            )
            .unwrap(),
        );
        let device = MockDevice::new(0, 64 * MIB);
        let dynamic: Arc<dyn Device> = device.clone();
        let sink: Arc<dyn AuditSink> = log.clone();
        let manager = VramManager::new(
            VramConfig::builder(s)
                .device(dynamic)
                .audit(sink)
                .worker_id("test-worker")
                .leaf_size(LeafSize::new(64 * 1024).unwrap())
                .build(),
        )
        .unwrap();
        Self {
            manager,
            device,
            log,
            memory,
            failing,
        }
    }

    fn types(&self) -> Vec<String> {
        self.memory
            .lines()
            .iter()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["event"]["type"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    fn assert_intact(&self) {
        let key = AuditKey::from_bytes(*secret().audit_key().expose_secret());
        let r = verify_lines(&self.memory.lines(), &key, None);
        assert!(r.is_intact(), "{:?}", r.findings);
    }

    fn assert_released(&self) {
        assert_eq!(self.manager.used_vram(0), 0, "capacity still reserved");
        assert_eq!(self.device.live_allocations(), 0, "device memory leaked");
    }
}

#[test]
fn a_seal_whose_record_cannot_be_written_fails_and_releases_everything() {
    let s = Setup::new("vram_sealed", true);
    let err = s
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(100_000, 1)),
        )
        .unwrap_err();
    assert!(
        matches!(err, VramError::Audit(AuditError::WriteFailed { .. })),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Environment);
    let msg = err.to_string();
    assert!(
        msg.contains("/var/log/vram/test-audit.jsonl"),
        "names the log: {msg}"
    );
    assert!(msg.contains("vram_sealed"), "{msg}");
    s.assert_released();
    // The allocation is matched by its release, and the failure is on record.
    assert_eq!(
        s.types(),
        [
            "log_created",
            "vram_allocated",
            "seal_failed",
            "vram_deallocated"
        ]
    );
    s.assert_intact();
    let m = s.manager.metrics();
    assert_eq!((m.seals, m.seal_failures, m.audit_records_lost), (0, 1, 1));

    // Once the log takes records again, sealing works.
    s.failing.store(false, Ordering::SeqCst);
    let shard = s
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(100_000, 1)),
        )
        .unwrap();
    drop(shard);
    s.assert_released();
    s.assert_intact();
}

#[test]
fn under_best_effort_a_lost_record_is_counted_and_the_seal_proceeds() {
    let s = Setup::new("vram_sealed", false);
    let shard = s
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(100_000, 2)),
        )
        .unwrap();
    assert_eq!(s.manager.metrics().audit_records_lost, 1);
    assert_eq!(s.log.stats().lost, 1);
    drop(shard);
    s.assert_released();
    assert_eq!(
        s.types(),
        ["log_created", "vram_allocated", "vram_deallocated"]
    );
    s.assert_intact();
}

#[test]
fn a_lost_seal_failed_record_is_counted_and_the_seal_error_stands() {
    // The seal fails on its own (wrong expected digest); recording that fails too.
    let s = Setup::new("seal_failed", true);
    let mut req = SealRequest::new(ModelRef::new("test:model").unwrap(), 0);
    req.expected_sha256 = Some(Sha256Hex::new(&"00".repeat(32)).unwrap());
    let err = s
        .manager
        .seal(&req, SealSource::Bytes(&pattern(70_000, 3)))
        .unwrap_err();
    assert!(matches!(err, VramError::DigestMismatch { .. }), "{err}");
    s.assert_released();
    assert_eq!(s.manager.metrics().audit_records_lost, 1);
    assert_eq!(
        s.types(),
        ["log_created", "vram_allocated", "vram_deallocated"]
    );
    s.assert_intact();
}

#[test]
fn release_reports_a_deallocation_that_could_not_be_recorded() {
    let s = Setup::new("vram_deallocated", true);
    let shard = s
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(100_000, 4)),
        )
        .unwrap();
    let err = shard.release().unwrap_err();
    assert!(matches!(err, VramError::Audit(_)), "{err}");
    s.assert_released();
    assert_eq!(s.manager.metrics().audit_records_lost, 1);

    s.failing.store(false, Ordering::SeqCst);
    let shard = s
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(100_000, 4)),
        )
        .unwrap();
    shard.release().unwrap();
    s.assert_released();
    s.assert_intact();
}

#[test]
fn injected_write_failures_under_best_effort_are_counted_in_the_metric() {
    let f = fixture(64 * MIB);
    f.audit.set_failing(true);
    let shard = f
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(100_000, 5)),
        )
        .unwrap();
    drop(shard);
    f.audit.set_failing(false);
    f.assert_no_leaks();
    // vram_allocated, vram_sealed, vram_deallocated: all lost, all counted.
    assert_eq!(f.manager.metrics().audit_records_lost, 3);
    assert_eq!(f.audit.stats().lost, 3);
}

#[test]
fn injected_write_failures_under_fail_closed_refuse_the_seal_without_leaks() {
    let f = fixture_fail_closed(64 * MIB);
    f.audit.set_failing(true);
    let err = f
        .manager
        .seal(
            &SealRequest::inline(0).unwrap(),
            SealSource::Bytes(&pattern(100_000, 6)),
        )
        .unwrap_err();
    f.audit.set_failing(false);
    assert!(matches!(err, VramError::Audit(_)), "{err}");
    f.assert_no_leaks();
    // vram_allocated was refused, so the seal stopped there; seal_failed was
    // refused too. Both are counted, none is in the log.
    assert_eq!(f.audit_count("vram_allocated"), 0);
    assert_eq!(f.audit_count("seal_failed"), 0);
    assert_eq!(f.audit_count("vram_deallocated"), 0);
    assert_eq!(f.manager.metrics().audit_records_lost, 2);
}

/// A worker secret in an owner-only file in `dir`, loaded the way a worker
/// loads it.
fn secret_in_file(dir: &std::path::Path) -> (std::path::PathBuf, WorkerSecret) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("worker.secret");
    std::fs::write(&path, SECRET).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    (path.clone(), WorkerSecret::load_file(&path).unwrap())
}

/// A manager writing to the file log at `log`, opened as a worker opens it
/// (vram-worker): under the secret's audit key, never the secret's own file.
fn manager_with_audit_file(
    secret: WorkerSecret,
    log: &std::path::Path,
) -> Result<VramManager, VramError> {
    let device: Arc<dyn Device> = MockDevice::new(0, 64 * MIB);
    let key = AuditKey::from_secret(&secret.audit_key());
    let sink = AuditLog::open_file_protecting(
        log,
        key,
        "test-worker",
        LogOptions::default(),
        &secret.protected_paths(),
    )?;
    VramManager::new(
        VramConfig::builder(secret)
            .device(device)
            .worker_id("test-worker")
            .audit(Arc::new(sink))
            .build(),
    )
}

#[test]
fn an_audit_file_opened_for_the_manager_is_never_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (secret_path, loaded) = secret_in_file(dir.path());
    let err = manager_with_audit_file(loaded, &secret_path).unwrap_err();
    assert!(
        matches!(err, VramError::Audit(AuditError::ProtectedFile { .. })),
        "{err}"
    );
    assert_eq!(std::fs::read(&secret_path).unwrap(), SECRET);

    // Elsewhere, the manager writes its log under the secret's audit key.
    let log = dir.path().join("audit.jsonl");
    let (_, loaded) = secret_in_file(dir.path());
    let manager = manager_with_audit_file(loaded, &log).unwrap();
    drop(
        manager
            .seal(
                &SealRequest::inline(0).unwrap(),
                SealSource::Bytes(&pattern(10_000, 7)),
            )
            .unwrap(),
    );
    drop(manager);
    let key = AuditKey::from_bytes(*secret().audit_key().expose_secret());
    let r = vram_audit::verify_chain(&[log], &key, None).unwrap();
    assert!(r.is_intact(), "{:?}", r.findings);
    assert!(r.genesis.is_some());
    assert_eq!(
        r.records, 4,
        "log_created, vram_allocated, vram_sealed, vram_deallocated"
    );
}

/// A sealed model's release says when a deallocation could not be
/// recorded, as a shard's does (every shard is released either way).
#[test]
fn a_model_release_reports_a_deallocation_that_could_not_be_recorded() {
    let s = Setup::new("vram_deallocated", true);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.safetensors"), pattern(100_000, 4)).unwrap();
    let request = vram_residency::SnapshotRequest::new(
        dir.path(),
        vram_residency::ModelRef::new("m").unwrap(),
        0,
    );
    let model = s.manager.seal_model(&request).unwrap();
    let err = model.release().unwrap_err();
    assert!(matches!(err, VramError::Audit(_)), "{err}");
    s.assert_released();

    s.failing.store(false, Ordering::SeqCst);
    let model = s.manager.seal_model(&request).unwrap();
    model.release().unwrap();
    s.assert_released();
}
