//! Tests of the CUDA backend. Without a driver only the no-driver path and the
//! host-side checks run; the real-device tests say so loudly and return.
#![allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]

use super::buffer::leaf_range;
use super::kernel::{SHA256_LEAVES_FN, SHA256_LEAVES_SRC};
use super::*;
use crate::{Device, DeviceBuffer, DeviceError, DeviceKind};
use std::io::Cursor;
use std::sync::Arc;

/// The device to run real-device tests on, or `None` after one loud line.
fn real_device(test: &str) -> Option<Arc<CudaDevice>> {
    if !driver_present() || device_count().map_or(true, |n| n == 0) {
        // The GPU bundle sets this: there a missing device is a failure.
        assert!(
            std::env::var("VRAM_RESIDENCY_REQUIRE_CUDA").map_or(true, |v| v != "1"),
            "VRAM_RESIDENCY_REQUIRE_CUDA=1 but no CUDA device was found for {test}"
        );
        loud(format_args!(
            "NO CUDA DEVICE: skipping real-device test {test}; only the no-driver path was tested"
        ));
        return None;
    }
    Some(CudaDevice::open(0).expect("device 0 opens when the driver reports one"))
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 8) as u8))
        .collect()
}

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn types_are_send_and_sync() {
    assert_send_sync::<CudaDevice>();
    assert_send_sync::<CudaBuffer>();
    assert_send_sync::<PinnedStaging>();
}

#[test]
fn open_and_count_return_typed_errors_without_panicking() {
    if driver_present() {
        let count = device_count().expect("driver present: the count is known");
        assert_eq!(
            CudaDevice::open(count).unwrap_err(),
            DeviceError::NoDevice {
                index: count,
                count
            }
        );
    } else {
        assert_eq!(device_count(), Err(DeviceError::NoDriver));
        assert_eq!(CudaDevice::open(0).unwrap_err(), DeviceError::NoDriver);
        assert_eq!(
            CudaDevice::open(u32::MAX).unwrap_err(),
            DeviceError::NoDriver
        );
        // Asking twice gives the same answer (the probe is cached, nothing panics).
        assert_eq!(device_count(), Err(DeviceError::NoDriver));
    }
}

#[test]
fn driver_errors_are_named_by_their_result_code() {
    let err = driver_error(
        "cuMemAlloc",
        DriverError(sys::CUresult::CUDA_ERROR_ILLEGAL_ADDRESS),
    );
    assert_eq!(
        err,
        DeviceError::Driver {
            call: "cuMemAlloc",
            code: "CUDA_ERROR_ILLEGAL_ADDRESS".to_owned()
        }
    );
    assert_eq!(
        err.to_string(),
        "CUDA cuMemAlloc failed: CUDA_ERROR_ILLEGAL_ADDRESS"
    );
}

#[test]
fn a_panicking_binding_becomes_a_typed_error() {
    // The default hook prints the panic message; the test harness captures it.
    let result: Result<(), DeviceError> = guarded("cuInit", || panic!("Missing symbol cuInit"));
    let err = result.unwrap_err();
    if driver_present() {
        assert!(
            matches!(err, DeviceError::Driver { call: "cuInit", .. }),
            "{err:?}"
        );
    } else {
        assert_eq!(err, DeviceError::NoDriver);
    }
}

#[test]
fn leaf_ranges_are_checked_with_a_partial_last_leaf() {
    // 10 bytes in leaves of 4: leaves 0, 1 and a partial leaf 2.
    assert_eq!(leaf_range(10, 4, 0, 3), Ok(3));
    assert_eq!(leaf_range(10, 4, 2, 1), Ok(3));
    assert_eq!(leaf_range(10, 4, 3, 0), Ok(3));
    assert_eq!(
        leaf_range(10, 4, 2, 2),
        Err(DeviceError::OutOfBounds {
            offset: 8,
            len: 8,
            buffer_len: 10
        })
    );
    assert!(matches!(
        leaf_range(10, 4, 4, 0),
        Err(DeviceError::OutOfBounds { .. })
    ));
    assert!(matches!(
        leaf_range(10, 4, u64::MAX, 2),
        Err(DeviceError::OutOfBounds { .. })
    ));
    assert!(matches!(
        leaf_range(10, 0, 0, 1),
        Err(DeviceError::InvalidArgument { .. })
    ));
    assert_eq!(leaf_range(8, 4, 0, 2), Ok(2));
    assert!(leaf_range(8, 4, 0, 3).is_err());
}

#[test]
fn kernel_source_is_loadable_by_nvrtc() {
    // NVRTC takes a C string: an interior NUL would make cudarc panic.
    assert!(!SHA256_LEAVES_SRC.contains('\0'));
    assert!(
        SHA256_LEAVES_SRC.contains(&format!("extern \"C\" __global__ void {SHA256_LEAVES_FN}("))
    );
    // The FIPS 180-4 initial hash value and first and last round constants.
    for constant in ["0x6a09e667u", "0x5be0cd19u", "0x428a2f98u", "0xc67178f2u"] {
        assert!(SHA256_LEAVES_SRC.contains(constant), "{constant}");
    }
}

/// NVRTC needs no GPU: wherever libnvrtc is installed, the kernel source is
/// compiled for the architectures the backend asks for, so a source NVRTC
/// rejects is caught before any device run.
#[test]
fn kernel_compiles_with_nvrtc_where_nvrtc_is_installed() {
    if !nvrtc_present() {
        loud(format_args!("NO NVRTC: the kernel source was not compiled by NVRTC (install libnvrtc to check it without a GPU)"));
        return;
    }
    // Hopper (H100, H200) and Ampere, as the device path asks for them, then
    // NVRTC's default, the fallback for an architecture this NVRTC does not know.
    for options in [
        shared::native_options(9, 0),
        shared::native_options(8, 0),
        cudarc::nvrtc::CompileOptions::default(),
    ] {
        let label = format!("{:?}", options.options);
        let ptx = shared::compile_ptx(options)
            .unwrap_or_else(|e| panic!("NVRTC rejected the kernel with {label}: {e}"))
            .to_src();
        assert!(
            ptx.contains(&format!(".entry {SHA256_LEAVES_FN}(")),
            "{label}: no entry point in the PTX"
        );
        // The 64 round constants live in constant memory, not in each thread.
        assert!(ptx.contains(".const"), "{label}");
    }
}

#[test]
fn pipelined_write_error_names_its_cause() {
    let read = PipelinedWriteError::from(std::io::Error::other("disk gone"));
    assert_eq!(read.to_string(), "reading the source failed: disk gone");
    let device = PipelinedWriteError::from(DeviceError::NoDriver);
    assert_eq!(device.to_string(), DeviceError::NoDriver.to_string());
}

#[test]
fn real_device_alloc_write_read_bounds_and_overwrite() {
    let Some(device) = real_device("real_device_alloc_write_read_bounds_and_overwrite") else {
        return;
    };
    assert_eq!(device.info().kind, DeviceKind::Cuda);
    assert!(!device.info().name.is_empty());
    let debug = format!("{device:?}");
    assert!(!debug.contains("0x"), "{debug}");

    let memory = device.memory_info().unwrap();
    assert!(
        memory.total > 0 && memory.free <= memory.total,
        "{memory:?}"
    );
    let attributes = device.attributes().unwrap();
    assert!(!attributes.managed_memory && !attributes.host_mapped);

    assert!(matches!(
        device.alloc(0),
        Err(DeviceError::InvalidArgument { .. })
    ));
    let too_much = memory.total.saturating_mul(4);
    match device.alloc(too_much) {
        Err(DeviceError::OutOfMemory {
            device: 0,
            needed,
            available,
        }) => {
            assert_eq!(needed, too_much);
            assert!(available <= memory.total);
        }
        other => panic!("expected OutOfMemory, got {other:?}"),
    }

    let before = device.live_allocations();
    let len = (1 << 20) + 7;
    let mut buffer = device.alloc(len as u64).unwrap();
    assert_eq!(buffer.len(), len as u64);
    let data = pattern(len, 3);
    buffer.write_at(0, &data).unwrap();
    let mut back = vec![0u8; len];
    buffer.read_at(0, &mut back).unwrap();
    assert_eq!(back, data);

    let mut middle = vec![0u8; 100];
    buffer.read_at(5000, &mut middle).unwrap();
    assert_eq!(middle, data[5000..5100]);

    assert_eq!(
        buffer.write_at(len as u64 - 1, &[1, 2]),
        Err(DeviceError::OutOfBounds {
            offset: len as u64 - 1,
            len: 2,
            buffer_len: len as u64
        })
    );
    assert!(matches!(
        buffer.read_at(u64::MAX, &mut [0u8; 1]),
        Err(DeviceError::OutOfBounds { .. })
    ));
    buffer.write_at(len as u64, &[]).unwrap();

    assert_eq!(device.live_allocations(), before + 1);
    let id = *device.live_buffers().last().unwrap();
    assert!(device.live_bytes() >= len as u64);
    device.overwrite(id, 10, &[0xAA, 0xBB]).unwrap();
    let mut corrupted = [0u8; 4];
    buffer.read_at(9, &mut corrupted).unwrap();
    assert_eq!(corrupted, [data[9], 0xAA, 0xBB, data[12]]);
    assert!(matches!(
        device.overwrite(id, len as u64, &[1]),
        Err(DeviceError::OutOfBounds { .. })
    ));
    assert!(format!("{buffer:?}").contains("CudaBuffer"));

    drop(buffer);
    assert_eq!(device.live_allocations(), before);
    assert!(!device.live_buffers().contains(&id));
    assert!(matches!(
        device.overwrite(id, 0, &[1]),
        Err(DeviceError::InvalidArgument { .. })
    ));
}

#[test]
fn real_device_hashes_leaves_like_the_cpu() {
    let Some(device) = real_device("real_device_hashes_leaves_like_the_cpu") else {
        return;
    };
    let len = 3 * 4096 + 1000;
    let data = pattern(len, 7);
    let mut buffer = device.alloc(len as u64).unwrap();
    buffer.write_at(0, &data).unwrap();

    if !nvrtc_present() {
        assert!(matches!(
            buffer.hash_leaves_on_device(b"", 4096, 0, 1),
            Err(DeviceError::Unsupported { .. })
        ));
        loud(format_args!("NO NVRTC: skipping the on-device hash comparison; only the Unsupported path was tested"));
        return;
    }
    let cpu = |prefix: &[u8], bytes: &[u8]| -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(prefix);
        ctx.update(bytes);
        ctx.finish().as_ref().try_into().unwrap()
    };
    for prefix in [&b""[..], b"\x00", b"vram-leaf-v1\x00", &[0x5a; 70][..]] {
        for leaf_size in [1u64, 55, 64, 100, 4096, 8192, 1 << 20] {
            let leaves = (len as u64).div_ceil(leaf_size);
            let first = leaves / 3;
            let count = (leaves - first).min(5000);
            let got = buffer
                .hash_leaves_on_device(prefix, leaf_size, first, count)
                .unwrap();
            assert_eq!(got.len() as u64, count);
            for (i, hash) in got.iter().enumerate() {
                let start = ((first + i as u64) * leaf_size) as usize;
                let end = (start + leaf_size as usize).min(len);
                assert_eq!(
                    *hash,
                    cpu(prefix, &data[start..end]),
                    "prefix {} leaf_size {leaf_size} leaf {}",
                    prefix.len(),
                    first + i as u64
                );
            }
            assert!(matches!(
                buffer.hash_leaves_on_device(prefix, leaf_size, first, leaves - first + 1),
                Err(DeviceError::OutOfBounds { .. })
            ));
        }
    }
    assert_eq!(
        buffer.hash_leaves_on_device(b"", 4096, 4, 0),
        Ok(Vec::new())
    );
    assert!(matches!(
        buffer.hash_leaves_on_device(b"", 0, 0, 1),
        Err(DeviceError::InvalidArgument { .. })
    ));

    // A corruption through the test path changes exactly the affected leaf.
    let id = *device.live_buffers().last().unwrap();
    let clean = buffer.hash_leaves_on_device(b"t", 4096, 0, 4).unwrap();
    device
        .overwrite(id, 4096 + 17, &[!data[4096 + 17]])
        .unwrap();
    let dirty = buffer.hash_leaves_on_device(b"t", 4096, 0, 4).unwrap();
    assert_eq!(clean[0], dirty[0]);
    assert_ne!(clean[1], dirty[1]);
    assert_eq!(clean[2..], dirty[2..]);
}

#[test]
fn real_device_pipelined_write_overlaps_and_round_trips() {
    let Some(device) = real_device("real_device_pipelined_write_overlaps_and_round_trips") else {
        return;
    };
    let len = 10 * (1 << 20) + 123;
    let data = pattern(len, 11);
    let mut buffer = device.alloc_cuda(len as u64).unwrap();
    let mut seen = Vec::new();
    let mut chunks = 0;
    let written = buffer
        .pipelined_write(Cursor::new(&data), 1 << 20, |chunk| {
            chunks += 1;
            seen.extend_from_slice(chunk);
        })
        .unwrap();
    assert_eq!(written, len as u64);
    assert_eq!(chunks, 11);
    assert_eq!(seen, data);
    let mut back = vec![0u8; len];
    buffer.read_at(0, &mut back).unwrap();
    assert_eq!(back, data);

    // A short source writes what it has; a long one is refused.
    let short = pattern(1000, 1);
    assert_eq!(
        buffer
            .pipelined_write(Cursor::new(&short), 256, |_| {})
            .unwrap(),
        1000
    );
    let mut head = vec![0u8; 1000];
    buffer.read_at(0, &mut head).unwrap();
    assert_eq!(head, short);
    let mut small = device.alloc_cuda(100).unwrap();
    assert!(matches!(
        small.pipelined_write(Cursor::new(&short), 64, |_| {}),
        Err(PipelinedWriteError::Device(DeviceError::OutOfBounds { .. }))
    ));
    assert!(matches!(
        small.pipelined_write(Cursor::new(&short), 0, |_| {}),
        Err(PipelinedWriteError::Device(
            DeviceError::InvalidArgument { .. }
        ))
    ));

    // The explicit pinned path: the staging buffer is reusable after the copy.
    let mut staging = device.alloc_pinned_staging(64).unwrap();
    staging.as_mut_slice().unwrap().fill(0x42);
    small.write_at_async_pinned(10, &staging, 64).unwrap();
    staging.as_mut_slice().unwrap().fill(0x43);
    assert!(matches!(
        small.write_at_async_pinned(0, &staging, 65),
        Err(DeviceError::InvalidArgument { .. })
    ));
    let mut back = [0u8; 64];
    small.read_at(10, &mut back).unwrap();
    assert_eq!(back, [0x42; 64]);
}

#[test]
fn real_device_direct_writes_from_registered_host_memory_round_trip() {
    let Some(device) =
        real_device("real_device_direct_writes_from_registered_host_memory_round_trip")
    else {
        return;
    };
    let len = 6 * (1 << 20) + 777;
    let data = pattern(len + 3, 29);
    let mut buffer = device.alloc_cuda(len as u64 + 100).unwrap();
    // An unaligned source slice at an unaligned offset.
    let source = &data[3..];
    buffer.write_direct(17, source).unwrap().unwrap();
    let mut back = vec![0u8; len];
    buffer.read_at(17, &mut back).unwrap();
    assert_eq!(back, source);
    // The same memory again (registration was removed), and a tiny copy.
    buffer.write_direct(0, &source[..5]).unwrap().unwrap();
    let mut head = [0u8; 5];
    buffer.read_at(0, &mut head).unwrap();
    assert_eq!(head, source[..5]);
    // Out of bounds is refused before anything is registered.
    assert!(matches!(
        buffer.write_direct(200, source),
        Some(Err(DeviceError::OutOfBounds { .. }))
    ));
    // Memory the driver already page-locked cannot be registered again: the
    // caller is told to copy another way, and nothing was written.
    let mut staging = device.alloc_pinned_staging(4096).unwrap();
    staging.as_mut_slice().unwrap().fill(0x77);
    let pinned = staging.as_slice().unwrap().to_vec();
    let outcome = buffer.write_direct(0, staging.as_slice().unwrap());
    match outcome {
        None => {}
        Some(Ok(())) => {
            let mut back = vec![0u8; 4096];
            buffer.read_at(0, &mut back).unwrap();
            assert_eq!(back, pinned);
        }
        Some(Err(e)) => panic!("direct write from pinned memory failed: {e}"),
    }
}

#[test]
fn real_device_staging_shared_by_two_buffers_waits_for_both_copies() {
    let Some(device) =
        real_device("real_device_staging_shared_by_two_buffers_waits_for_both_copies")
    else {
        return;
    };
    // A long copy on one buffer's stream, then a short one on another's: refilling
    // the staging buffer must wait for the long copy too, not only the last one.
    let len = 64 << 20;
    let mut big = device.alloc_cuda(len as u64).unwrap();
    let mut small = device.alloc_cuda(4096).unwrap();
    let mut staging = device.alloc_pinned_staging(len).unwrap();
    let data = pattern(len, 21);
    staging.as_mut_slice().unwrap().copy_from_slice(&data);
    big.write_at_async_pinned(0, &staging, len).unwrap();
    small.write_at_async_pinned(0, &staging, 4096).unwrap();
    staging.as_mut_slice().unwrap().fill(0);
    let mut back = vec![0u8; len];
    big.read_at(0, &mut back).unwrap();
    assert!(
        back == data,
        "the host refilled staging while a copy still read it"
    );
    let mut head = vec![0u8; 4096];
    small.read_at(0, &mut head).unwrap();
    assert_eq!(head, data[..4096]);
}

#[test]
fn a_driver_that_cannot_load_the_kernel_means_unsupported_not_failed() {
    use super::shared::driver_cannot_load_ptx;
    use sys::CUresult::*;
    for code in [
        CUDA_ERROR_UNSUPPORTED_PTX_VERSION,
        CUDA_ERROR_INVALID_PTX,
        CUDA_ERROR_NO_BINARY_FOR_GPU,
        CUDA_ERROR_JIT_COMPILER_NOT_FOUND,
    ] {
        assert!(driver_cannot_load_ptx(code), "{code:?}");
    }
    // Faults stay errors: they must not be hidden behind the host fallback.
    for code in [
        CUDA_ERROR_ILLEGAL_ADDRESS,
        CUDA_ERROR_OUT_OF_MEMORY,
        CUDA_ERROR_INVALID_CONTEXT,
        CUDA_ERROR_LAUNCH_FAILED,
    ] {
        assert!(!driver_cannot_load_ptx(code), "{code:?}");
    }
}

/// Writes straight to the process's stderr, which the test harness does not
/// capture (it captures `eprintln!`): a check that did not run must say so in
/// every test run, not only under `--nocapture`.
fn loud(msg: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{msg}");
}
