//! The core scenarios against a real CUDA device, when one is present. Without
//! one this prints one loud line and checks the no-driver path instead; with
//! `VRAM_RESIDENCY_REQUIRE_CUDA=1` (the GPU bundle sets it) a missing device
//! fails the test.
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

fn require_cuda() -> bool {
    std::env::var("VRAM_RESIDENCY_REQUIRE_CUDA").is_ok_and(|v| v == "1")
}

/// CUDA device 0, or `None` after saying loudly what was not tested (a
/// missing device fails instead under `VRAM_RESIDENCY_REQUIRE_CUDA=1`).
#[cfg(feature = "cuda")]
fn cuda_device_or_skip(untested: &str) -> Option<std::sync::Arc<vram_core::cuda::CudaDevice>> {
    match vram_core::cuda::CudaDevice::open(0) {
        Ok(d) => Some(d),
        Err(e) => {
            assert!(
                !require_cuda(),
                "VRAM_RESIDENCY_REQUIRE_CUDA=1 but no CUDA device: {e}"
            );
            loud(format_args!("NO CUDA DEVICE FOUND ({e}): {untested}"));
            None
        }
    }
}

#[cfg(feature = "cuda")]
#[test]
fn scenarios_on_a_real_cuda_device() {
    use common::*;
    use std::sync::Arc;
    use vram_audit::{AuditKey, AuditLog, AuditSink};
    use vram_core::Device;
    use vram_crypto::LeafSize;
    use vram_residency::{
        HashPath, SealRequest, SealSource, VerifyPolicy, VramConfig, VramError, VramManager,
    };
    use vram_validation::ModelRef;

    let Some(device) = cuda_device_or_skip("only the mock was tested") else {
        return;
    };
    let s = secret();
    let audit = Arc::new(
        AuditLog::in_memory(
            AuditKey::from_bytes(*s.audit_key().expose_secret()),
            "gpu-test",
        )
        .unwrap(),
    );
    let sink: Arc<dyn AuditSink> = audit.clone();
    let dynamic: Arc<dyn Device> = device.clone();
    let m = VramManager::new(
        VramConfig::builder(s)
            .device(dynamic.clone())
            .audit(sink)
            .leaf_size(LeafSize::new(64 * 1024).unwrap())
            .build(),
    )
    .unwrap();
    // Seal format v2 names the device: the driver's UUID is bound in.
    let uuid = device.info().uuid;
    loud(format_args!(
        "cuda: device UUID {}",
        if uuid.is_some() {
            "reported by the driver"
        } else {
            "NOT reported"
        }
    ));
    for len in [1usize, 4095, 65_536, 65_537, 3_000_000] {
        let data = pattern(len, len as u8);
        let shard = m
            .seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(&data))
            .unwrap();
        let h = shard.handle();
        assert_eq!(m.check_handle(&h).unwrap(), 2, "a v2 seal on CUDA");
        assert_eq!(h.device_uuid.is_some(), uuid.is_some());
        let full = m.verify_with(&shard, VerifyPolicy::Full).unwrap();
        loud(format_args!(
            "cuda: {len} bytes verified via {:?}",
            full.hash_path
        ));
        m.verify_with(&shard, VerifyPolicy::Sampled { leaves: 8 })
            .unwrap();
        // Corrupt one byte on the device; both hashing paths must catch it.
        let id = *device.live_buffers().last().unwrap();
        let offset = (len / 2) as u64;
        let mut byte = [0u8; 1];
        device.read_for_test(id, offset, &mut byte).unwrap();
        device.overwrite(id, offset, &[byte[0] ^ 0x10]).unwrap();
        let err = m.verify_with(&shard, VerifyPolicy::Full).unwrap_err();
        assert!(matches!(err, VramError::IntegrityViolation { .. }), "{err}");
        assert!(err
            .corrupt_ranges()
            .iter()
            .any(|r| r.start <= offset && offset < r.end));
        if full.hash_path == HashPath::OnDevice {
            // Cross-check: on-device leaf hashes equal CPU leaf hashes.
            let cpu = vram_crypto::leaf_hashes(&data, LeafSize::new(64 * 1024).unwrap());
            assert_eq!(cpu.root(), *shard.tree_digest());
        }
        drop(shard);
    }
    assert_eq!(device.live_allocations(), 0);
    assert_eq!(m.used_vram(0), 0);

    // Seals hashed by the kernel after the upload commit to the same digest as
    // the CPU, from memory and from a file, and verify on the device.
    let on_device = VramManager::new(
        VramConfig::builder(secret())
            .device(dynamic.clone())
            .seal_hashing(vram_residency::SealHashing::ON_DEVICE)
            .build(),
    )
    .unwrap();
    assert_eq!(
        on_device.leaf_size(),
        vram_residency::CUDA_DEFAULT_LEAF_SIZE
    );
    for len in [1usize, 65_537, 3_000_000, 40 << 20] {
        let data = pattern(len, len as u8 ^ 0x5a);
        let expected = vram_crypto::tree_digest(&data, on_device.leaf_size());
        let shard = on_device
            .seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(&data))
            .unwrap();
        assert_eq!(*shard.tree_digest(), expected, "{len} bytes from memory");
        let path = std::env::temp_dir().join(format!("vram-cuda-dual-{}", std::process::id()));
        std::fs::write(&path, &data).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let from_file = on_device
            .seal(
                &SealRequest::new(ModelRef::new("cuda:file").unwrap(), 0),
                SealSource::file(&file),
            )
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            *from_file.tree_digest(),
            expected,
            "{len} bytes from a file"
        );
        let report = on_device
            .verify_with(&from_file, VerifyPolicy::Full)
            .unwrap();
        assert_eq!(report.hash_path, HashPath::OnDevice);
        loud(format_args!(
            "cuda: {len} bytes sealed by the kernel, digest matches the CPU"
        ));
    }
    assert_eq!(device.live_allocations(), 0);
}

#[cfg(not(feature = "cuda"))]
#[test]
fn scenarios_on_a_real_cuda_device() {
    assert!(
        !require_cuda(),
        "VRAM_RESIDENCY_REQUIRE_CUDA=1 but this build has no `cuda` feature"
    );
    loud(format_args!(
        "NO CUDA DEVICE FOUND: this build has no `cuda` feature; only the mock was tested"
    ));
    let _ = common::MIB;
}

/// Writes straight to the process's stderr, which the test harness does not
/// capture (it captures `eprintln!`): a check that did not run must say so in
/// every test run, not only under `--nocapture`.
fn loud(msg: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// A tensor read through a lease's device address (as a kernel would take
/// it) holds exactly the file's bytes. Runs on a real device only.
#[cfg(feature = "cuda")]
#[test]
fn a_leased_tensor_is_read_through_its_device_address() {
    use common::*;
    use std::sync::Arc;
    use vram_core::Device;
    use vram_residency::{
        LeasePolicy, SealRequest, SealSource, TensorMemory, VramConfig, VramManager,
    };

    let Some(device) = cuda_device_or_skip("leased device addresses were not tested") else {
        return;
    };
    let dynamic: Arc<dyn Device> = device.clone();
    let m = VramManager::new(VramConfig::builder(secret()).device(dynamic).build()).unwrap();
    let a = pattern(3 * 4096, 1);
    let b = pattern(1_000_003, 2);
    let header = format!(
        r#"{{"a":{{"dtype":"U8","shape":[{}],"data_offsets":[0,{}]}},"b":{{"dtype":"U8","shape":[{}],"data_offsets":[{},{}]}}}}"#,
        a.len(),
        a.len(),
        b.len(),
        a.len(),
        a.len() + b.len()
    );
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    file.extend_from_slice(&a);
    file.extend_from_slice(&b);
    let shard = m
        .seal(&SealRequest::inline(0).unwrap(), SealSource::Bytes(&file))
        .unwrap();
    let lease = m.lease(&shard, LeasePolicy::Full).unwrap();
    let tensors = lease.tensors().unwrap();
    for (name, want) in [("a", &a), ("b", &b)] {
        let t = tensors.get(name).unwrap();
        let TensorMemory::Device(mem) = t.memory() else {
            panic!("a CUDA lease hands out device memory");
        };
        assert_eq!(mem.len(), want.len() as u64);
        assert!(!format!("{t:?}").contains(&format!("{:x}", mem.address())));
        let mut got = vec![0u8; want.len()];
        device.read_device_memory(&mem, &mut got).unwrap();
        assert!(got == *want, "tensor {name} read through its lease differs");
    }
    loud(format_args!(
        "cuda: leased tensors read through their device addresses match the file"
    ));
}
