//! Behaviour of the mock device: capacity, counters, faults, bounds.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::unwrap_used
)]
use std::sync::Arc;
use std::thread;
use vram_core::{check_vram_only, Device, DeviceAttributes, DeviceError, DeviceKind, MemoryInfo};
use vram_mock::{MockDevice, DEFAULT_CAPACITY};

const KIB: u64 = 1024;

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + 7) as u8).collect()
}

fn read_all(buf: &dyn vram_core::DeviceBuffer) -> Vec<u8> {
    let mut out = vec![0u8; buf.len() as usize];
    buf.read_at(0, &mut out).unwrap();
    out
}

#[test]
fn reports_itself_as_a_mock() {
    let d = MockDevice::new(3, KIB);
    assert_eq!(d.info().kind, DeviceKind::Mock);
    assert_eq!(d.info().name, "mock");
    assert_eq!(d.info().index, 3);
    assert_eq!(d.attributes().unwrap(), DeviceAttributes::default());
    assert_eq!(DEFAULT_CAPACITY, 24 * 1024 * 1024 * 1024);
    assert_eq!(MockDevice::builder().build().capacity(), DEFAULT_CAPACITY);
    let dbg = format!("{:?}", d.alloc(16).unwrap());
    assert!(dbg.contains("len: 16") && !dbg.contains("0x"), "{dbg}");
}

#[test]
fn capacity_is_enforced_and_free_memory_reported() {
    let d = MockDevice::new(0, 10 * KIB);
    assert_eq!(
        d.memory_info().unwrap(),
        MemoryInfo {
            total: 10 * KIB,
            free: 10 * KIB
        }
    );
    let a = d.alloc(6 * KIB).unwrap();
    assert_eq!(d.memory_info().unwrap().free, 4 * KIB);
    let err = d.alloc(5 * KIB).unwrap_err();
    assert_eq!(
        err,
        DeviceError::OutOfMemory {
            device: 0,
            needed: 5 * KIB,
            available: 4 * KIB
        }
    );
    assert!(err.is_retriable());
    assert_eq!(
        d.live_bytes(),
        6 * KIB,
        "a refused allocation takes nothing"
    );
    let b = d.alloc(4 * KIB).unwrap();
    assert_eq!(d.memory_info().unwrap().free, 0);
    assert!(d.alloc(1).is_err());
    drop(a);
    assert_eq!(d.memory_info().unwrap().free, 6 * KIB);
    drop(b);
    assert_eq!(d.memory_info().unwrap().free, 10 * KIB);
}

#[test]
fn zero_byte_allocation_is_invalid() {
    let d = MockDevice::new(0, KIB);
    assert!(matches!(
        d.alloc(0),
        Err(DeviceError::InvalidArgument { .. })
    ));
    assert_eq!(d.live_allocations(), 0);
}

#[test]
fn leak_counters_return_to_zero_after_drop() {
    let d = MockDevice::new(0, 64 * KIB);
    let bufs: Vec<_> = (1..=5).map(|i| d.alloc(i * KIB).unwrap()).collect();
    assert_eq!(d.live_allocations(), 5);
    assert_eq!(d.live_bytes(), 15 * KIB);
    let ids = d.live_buffers();
    assert_eq!(ids.len(), 5);
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids in allocation order"
    );
    assert_eq!(d.buffer_len(ids[4]), Some(5 * KIB));
    drop(bufs);
    assert_eq!((d.live_allocations(), d.live_bytes()), (0, 0));
    assert!(d.live_buffers().is_empty());
    assert_eq!(d.buffer_len(ids[0]), None);
    // A dropped buffer cannot be corrupted (or read) any more.
    assert!(matches!(
        d.flip_bit(ids[0], 0, 0),
        Err(DeviceError::InvalidArgument { .. })
    ));
}

#[test]
fn buffers_outlive_the_device_handle_and_still_free() {
    let d = MockDevice::new(0, KIB);
    let watcher = Arc::clone(&d);
    let mut buf = d.alloc(100).unwrap();
    drop(d);
    buf.write_at(0, &[1; 100]).unwrap();
    assert_eq!(watcher.live_allocations(), 1);
    drop(buf);
    assert_eq!(watcher.live_allocations(), 0);
}

#[test]
fn write_then_read_round_trips_and_counts_bytes() {
    let d = MockDevice::new(0, 64 * KIB);
    let mut buf = d.alloc(4 * KIB).unwrap();
    assert_eq!(
        read_all(buf.as_ref()),
        vec![0; 4096],
        "fresh buffers are zeroed"
    );
    let data = pattern(4096);
    buf.write_at(0, &data[..1000]).unwrap();
    buf.write_at(1000, &data[1000..]).unwrap();
    assert_eq!(d.bytes_written(), 4096);
    let before = d.bytes_read();
    assert_eq!(read_all(buf.as_ref()), data);
    let mut mid = [0u8; 10];
    buf.read_at(2000, &mut mid).unwrap();
    assert_eq!(&mid[..], &data[2000..2010]);
    assert_eq!(d.bytes_read() - before, 4096 + 10);
    buf.write_at(4096, &[]).unwrap();
    buf.read_at(4096, &mut []).unwrap();
}

#[test]
fn out_of_bounds_accesses_are_errors_even_near_u64_max() {
    let d = MockDevice::new(0, KIB);
    let mut buf = d.alloc(100).unwrap();
    let mut out = [0u8; 8];
    for offset in [93, 100, 1 << 40, u64::MAX - 3, u64::MAX] {
        assert!(
            matches!(
                buf.read_at(offset, &mut out),
                Err(DeviceError::OutOfBounds { .. })
            ),
            "read at {offset}"
        );
        assert!(
            matches!(
                buf.write_at(offset, &out),
                Err(DeviceError::OutOfBounds { .. })
            ),
            "write at {offset}"
        );
    }
    let id = d.live_buffers()[0];
    assert!(matches!(
        d.flip_bit(id, 100, 0),
        Err(DeviceError::OutOfBounds { .. })
    ));
    assert!(matches!(
        d.overwrite(id, u64::MAX, &[1]),
        Err(DeviceError::OutOfBounds { .. })
    ));
    assert!(matches!(
        d.overwrite(id, 99, &[1, 2]),
        Err(DeviceError::OutOfBounds { .. })
    ));
    assert_eq!(d.bytes_read(), 0, "failed reads are not counted");
    assert_eq!(
        read_all(buf.as_ref()),
        vec![0; 100],
        "failed accesses change nothing"
    );
}

#[test]
fn huge_allocation_is_out_of_memory_not_an_abort() {
    // Capacity allows it, so the host allocation itself must fail gracefully.
    let d = MockDevice::new(0, u64::MAX);
    let err = d.alloc(u64::MAX / 2).unwrap_err();
    assert!(
        matches!(err, DeviceError::OutOfMemory { needed, .. } if needed == u64::MAX / 2),
        "{err:?}"
    );
    assert_eq!(
        (d.live_allocations(), d.live_bytes()),
        (0, 0),
        "the claim was rolled back"
    );
    assert!(matches!(
        d.alloc(u64::MAX),
        Err(DeviceError::OutOfMemory { .. })
    ));
    // Against the default capacity the request is refused before any host allocation.
    let small = MockDevice::new(0, DEFAULT_CAPACITY);
    assert_eq!(
        small.alloc(u64::MAX / 2).unwrap_err(),
        DeviceError::OutOfMemory {
            device: 0,
            needed: u64::MAX / 2,
            available: DEFAULT_CAPACITY
        }
    );
}

#[test]
fn fail_next_allocs_fires_exactly_n_times() {
    let d = MockDevice::new(0, 64 * KIB);
    d.fail_next_allocs(2);
    for _ in 0..2 {
        assert_eq!(
            d.alloc(KIB).unwrap_err(),
            DeviceError::InjectedFault {
                what: "allocation failure"
            }
        );
        assert_eq!((d.live_allocations(), d.live_bytes()), (0, 0));
    }
    let ok = d.alloc(KIB).unwrap();
    assert_eq!(d.live_bytes(), KIB);
    drop(ok);
    // Zero-byte requests are refused before a fault is consumed.
    d.fail_next_allocs(1);
    assert!(matches!(
        d.alloc(0),
        Err(DeviceError::InvalidArgument { .. })
    ));
    assert!(matches!(d.alloc(1), Err(DeviceError::InjectedFault { .. })));
    assert!(d.alloc(1).is_ok());
}

#[test]
fn fail_next_reads_fires_exactly_n_times() {
    let d = MockDevice::new(0, KIB);
    let mut buf = d.alloc(16).unwrap();
    buf.write_at(0, &[9; 16]).unwrap();
    d.fail_next_reads(1);
    let mut out = [0u8; 16];
    assert_eq!(
        buf.read_at(0, &mut out).unwrap_err(),
        DeviceError::InjectedFault {
            what: "read failure"
        }
    );
    assert_eq!(out, [0; 16]);
    assert_eq!(d.bytes_read(), 0);
    buf.read_at(0, &mut out).unwrap();
    assert_eq!(out, [9; 16]);
}

#[test]
fn fail_write_at_fails_the_covering_write_once_after_a_partial_copy() {
    let d = MockDevice::new(0, 64 * KIB);
    let mut buf = d.alloc(4096).unwrap();
    d.fail_write_at(2500);
    let data = pattern(4096);
    // Writes that do not cover offset 2500 are untouched by the fault.
    buf.write_at(0, &data[..2048]).unwrap();
    // The write covering 2500 lands 2048..2500, then fails.
    assert_eq!(
        buf.write_at(2048, &data[2048..]).unwrap_err(),
        DeviceError::InjectedFault {
            what: "write failure"
        }
    );
    let got = read_all(buf.as_ref());
    assert_eq!(&got[..2500], &data[..2500]);
    assert!(
        got[2500..].iter().all(|&b| b == 0),
        "bytes after the fault did not land"
    );
    // Fired once: the retry succeeds.
    buf.write_at(2048, &data[2048..]).unwrap();
    assert_eq!(read_all(buf.as_ref()), data);
}

#[test]
fn fail_write_at_applies_to_the_next_buffer_written() {
    let d = MockDevice::new(0, 64 * KIB);
    d.fail_write_at(0);
    let mut a = d.alloc(10).unwrap();
    assert!(matches!(
        a.write_at(0, &[1; 10]),
        Err(DeviceError::InjectedFault { .. })
    ));
    let mut b = d.alloc(10).unwrap();
    b.write_at(0, &[1; 10]).unwrap();
    d.fail_write_at(9);
    d.clear_faults();
    a.write_at(0, &[1; 10]).unwrap();
}

#[test]
fn corruption_hits_exactly_the_named_byte() {
    let d = MockDevice::new(0, 64 * KIB);
    let mut buf = d.alloc(8192).unwrap();
    let data = pattern(8192);
    buf.write_at(0, &data).unwrap();
    let id = *d.live_buffers().last().unwrap();
    // First byte, last byte, a leaf boundary (4096 bytes) and a few others.
    for (offset, bit) in [(0u64, 0u8), (8191, 7), (4095, 3), (4096, 4), (1234, 5)] {
        d.flip_bit(id, offset, bit).unwrap();
        let got = read_all(buf.as_ref());
        let diffs: Vec<usize> = (0..8192).filter(|&i| got[i] != data[i]).collect();
        assert_eq!(diffs, vec![offset as usize]);
        assert_eq!(got[offset as usize] ^ data[offset as usize], 1 << bit);
        d.flip_bit(id, offset, bit).unwrap();
        assert_eq!(read_all(buf.as_ref()), data, "flipping twice restores");
    }
    d.flip_bits(id, 10, 0xFF).unwrap();
    assert_eq!(read_all(buf.as_ref())[10], !data[10]);
    d.overwrite(id, 4094, &[0xAA; 4]).unwrap();
    let got = read_all(buf.as_ref());
    assert_eq!(&got[4094..4098], &[0xAA; 4]);
    assert_eq!(&got[4098..], &data[4098..]);
    assert!(matches!(
        d.flip_bit(id, 0, 8),
        Err(DeviceError::InvalidArgument { .. })
    ));
    assert!(matches!(
        d.flip_bits(id, 0, 0),
        Err(DeviceError::InvalidArgument { .. })
    ));
}

#[test]
fn corruption_does_not_count_as_device_traffic() {
    let d = MockDevice::new(0, KIB);
    let _buf = d.alloc(64).unwrap();
    let id = d.live_buffers()[0];
    d.overwrite(id, 0, &[1; 64]).unwrap();
    d.flip_bit(id, 3, 1).unwrap();
    assert_eq!((d.bytes_read(), d.bytes_written()), (0, 0));
}

#[test]
fn many_threads_read_one_buffer_concurrently() {
    let d = MockDevice::new(0, 1 << 20);
    let mut buf = d.alloc(1 << 16).unwrap();
    let data = pattern(1 << 16);
    buf.write_at(0, &data).unwrap();
    let buf: Arc<dyn vram_core::DeviceBuffer> = Arc::from(buf);
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let (buf, data) = (Arc::clone(&buf), data.clone());
            thread::spawn(move || {
                let mut out = vec![0u8; 4096];
                for round in 0..200u64 {
                    let offset = ((round * 7919 + t * 104_729) % 16) * 4096;
                    buf.read_at(offset, &mut out).unwrap();
                    assert_eq!(&out[..], &data[offset as usize..offset as usize + 4096]);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(d.bytes_read(), 8 * 200 * 4096);
    drop(buf);
    assert_eq!(d.live_allocations(), 0);
}

#[test]
fn concurrent_allocations_never_exceed_capacity() {
    let d = MockDevice::new(0, 100 * KIB);
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let d = Arc::clone(&d);
            thread::spawn(move || {
                let (mut held, mut refused) = (Vec::new(), 0u32);
                for _ in 0..50 {
                    match d.alloc(10 * KIB) {
                        Ok(b) => held.push(b),
                        Err(DeviceError::OutOfMemory { .. }) => {
                            refused += 1;
                            held.pop();
                        }
                        Err(e) => panic!("unexpected {e:?}"),
                    }
                    assert!(d.live_bytes() <= 100 * KIB);
                    assert!(d.live_allocations() <= 10);
                }
                refused
            })
        })
        .collect();
    let refused: u32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    // 400 requests of 10 KiB against 100 KiB: the limit must have been hit.
    assert!(refused > 0);
    assert_eq!((d.live_allocations(), d.live_bytes()), (0, 0));
}

#[test]
fn attributes_simulate_devices_the_policy_refuses() {
    let integrated = MockDevice::builder()
        .name("mock integrated")
        .attributes(DeviceAttributes {
            integrated: true,
            ..DeviceAttributes::default()
        })
        .build();
    let v = check_vram_only(integrated.info(), &integrated.attributes().unwrap()).unwrap_err();
    assert_eq!(v.policy_name(), "integrated_gpu");
    assert!(v.to_string().contains("device 0 (mock integrated)"), "{v}");
    let managed = MockDevice::builder()
        .index(1)
        .capacity(KIB)
        .attributes(DeviceAttributes {
            managed_memory: true,
            ..DeviceAttributes::default()
        })
        .build();
    let v = check_vram_only(managed.info(), &managed.attributes().unwrap()).unwrap_err();
    assert_eq!(v.policy_name(), "managed_memory");
    let plain = MockDevice::new(0, KIB);
    assert!(check_vram_only(plain.info(), &plain.attributes().unwrap()).is_ok());
}

#[test]
fn on_device_hashing_is_unsupported() {
    let d = MockDevice::new(0, KIB);
    let buf = d.alloc(64).unwrap();
    assert!(matches!(
        buf.hash_leaves_on_device(b"", 64, 0, 1),
        Err(DeviceError::Unsupported { .. })
    ));
}

#[test]
fn unwritten_bytes_read_as_zero_and_writes_in_any_order_land() {
    let dev = MockDevice::new(0, 64 * KIB);
    let mut buf = dev.alloc(10 * KIB).unwrap();
    assert_eq!(read_all(buf.as_ref()), vec![0u8; 10 * KIB as usize]);
    // Out of order: the tail first, then the head, then a middle overwrite.
    buf.write_at(8 * KIB, &[0xAA; 2048]).unwrap();
    buf.write_at(0, &[0xBB; 100]).unwrap();
    buf.write_at(4 * KIB, &[0xCC; 10]).unwrap();
    let all = read_all(buf.as_ref());
    assert!(all[..100].iter().all(|&b| b == 0xBB));
    assert!(all[100..4 * KIB as usize].iter().all(|&b| b == 0));
    assert!(all[4 * KIB as usize..4 * KIB as usize + 10]
        .iter()
        .all(|&b| b == 0xCC));
    assert!(all[8 * KIB as usize..].iter().all(|&b| b == 0xAA));
    // A partial read straddling written and unwritten bytes.
    let mut out = [1u8; 20];
    buf.read_at(90, &mut out).unwrap();
    assert_eq!(&out[..10], &[0xBB; 10]);
    assert_eq!(&out[10..], &[0; 10]);
    // Corruption of a never-written byte works too.
    let id = *dev.live_buffers().last().unwrap();
    dev.flip_bits(id, 6 * KIB, 0xFF).unwrap();
    let mut one = [0u8; 1];
    buf.read_at(6 * KIB, &mut one).unwrap();
    assert_eq!(one, [0xFF]);
}

#[test]
fn freed_host_memory_is_reused_but_never_readable() {
    let dev = MockDevice::new(0, 64 * KIB);
    let mut a = dev.alloc(8 * KIB).unwrap();
    a.write_at(0, &[0x5A; 8 * KIB as usize]).unwrap();
    drop(a);
    assert_eq!(dev.live_bytes(), 0);
    assert_eq!(dev.pooled_bytes(), 8 * KIB);
    assert_eq!(
        dev.memory_info().unwrap().free,
        64 * KIB,
        "pooled memory is free device memory"
    );
    // A similar size reuses the vector; its old contents are gone.
    let b = dev.alloc(8 * KIB - 100).unwrap();
    assert_eq!(dev.pooled_bytes(), 0);
    assert!(read_all(b.as_ref()).iter().all(|&x| x == 0));
    drop(b);
    dev.trim_pool();
    assert_eq!(dev.pooled_bytes(), 0);
    // The pool is bounded by half the capacity.
    let big = dev.alloc(40 * KIB).unwrap();
    drop(big);
    assert_eq!(dev.pooled_bytes(), 0);
}

#[test]
fn fill_in_place_lends_the_whole_memory_and_honours_faults() {
    let dev = MockDevice::new(0, 8 * 1024 * KIB);
    let len = 3 * 1024 * KIB as usize + 77;
    let data = pattern(len);
    let mut buf = dev.alloc(len as u64).unwrap();
    let mut calls = 0;
    let mut fill = |dst: &mut [u8]| {
        calls += 1;
        assert_eq!(dst.len(), len);
        dst.copy_from_slice(&data);
        Ok(())
    };
    buf.fill_in_place(&mut fill).unwrap();
    assert_eq!(read_all(buf.as_ref()), data);
    assert_eq!(dev.bytes_written(), len as u64);

    // A failing fill leaves nothing readable (reused memory included).
    let mut failing = |dst: &mut [u8]| {
        dst[..1024].fill(0xEE);
        Err(std::io::Error::other("source gone"))
    };
    match buf.fill_in_place(&mut failing) {
        Err(vram_core::StreamError::Read(e)) => assert_eq!(e.to_string(), "source gone"),
        other => panic!("expected a read error, got {other:?}"),
    }
    assert!(read_all(buf.as_ref()).iter().all(|&b| b == 0));

    // An armed write fault fails the fill before anything lands; a silent
    // corruption flips the first byte of the next one.
    dev.fail_write_at(5);
    assert!(matches!(
        buf.fill_in_place(&mut fill),
        Err(vram_core::StreamError::Device(
            DeviceError::InjectedFault { .. }
        ))
    ));
    dev.corrupt_next_writes(1);
    buf.fill_in_place(&mut fill).unwrap();
    let back = read_all(buf.as_ref());
    assert_eq!(back[0], data[0] ^ 1);
    assert_eq!(back[1..], data[1..]);
    // The faulted fill never reached `fill`.
    assert_eq!(calls, 2);
}

#[test]
fn capabilities_are_reported_as_built_and_methods_outside_them_are_unsupported() {
    let plain = MockDevice::new(0, 8 * KIB);
    let caps = plain.capabilities();
    assert!(caps.fill_in_place && !caps.stream_from && !caps.hash_on_device);
    let mut buf = plain.alloc(64).unwrap();
    let mut on_chunk = |_: &[u8]| panic!("no chunk may be handed out");
    let mut src: &[u8] = &[1u8; 64];
    assert!(matches!(
        buf.stream_from(&mut src, 16, &mut on_chunk),
        Err(vram_core::StreamError::Device(
            DeviceError::Unsupported { .. }
        ))
    ));
    assert_eq!(src.len(), 64, "nothing is read by an unsupported stream");

    let closed = MockDevice::builder()
        .capacity(8 * KIB)
        .fill_in_place(false)
        .stream_from(true)
        .on_device_hashing(true)
        .build();
    let caps = closed.capabilities();
    assert!(!caps.fill_in_place && caps.stream_from && caps.hash_on_device);
    let mut buf = closed.alloc(1000).unwrap();
    let mut lend = |_: &mut [u8]| -> std::io::Result<()> { panic!("memory may not be lent") };
    assert!(matches!(
        buf.fill_in_place(&mut lend),
        Err(vram_core::StreamError::Device(
            DeviceError::Unsupported { .. }
        ))
    ));
    // Streaming writes every byte, in chunks, and hands each chunk over.
    let data = pattern(1000);
    let mut seen = Vec::new();
    let mut on_chunk = |c: &[u8]| {
        assert!(c.len() <= 64);
        seen.extend_from_slice(c);
    };
    let n = buf.stream_from(&mut &data[..], 64, &mut on_chunk).unwrap();
    assert_eq!(n, 1000);
    assert_eq!(seen, data);
    assert_eq!(read_all(buf.as_ref()), data);
    let calls = closed.upload_calls();
    assert_eq!(
        (calls.stream_from, calls.fill_in_place, calls.write_at),
        (1, 0, 0)
    );
    // A source longer than the buffer fails on the device side.
    let long = pattern(1001);
    assert!(matches!(
        buf.stream_from(&mut &long[..], 64, &mut |_| ()),
        Err(vram_core::StreamError::Device(
            DeviceError::OutOfBounds { .. }
        ))
    ));
}
