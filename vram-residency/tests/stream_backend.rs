//! The facade drives a backend's own streaming pipeline (`stream_from`, what
//! CUDA offers with pinned staging) when the device has one. A device built
//! here over the mock implements it, so the path is tested without a GPU.
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
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use vram_core::{
    Device, DeviceAttributes, DeviceBuffer, DeviceCapabilities, DeviceError, DeviceInfo,
    MemoryInfo, StreamError,
};
use vram_mock::MockDevice;
use vram_residency::SealSource;
use vram_residency::{SealRequest, VerifyPolicy, VramConfig, VramError, VramManager};
use vram_validation::ModelRef;

#[derive(Debug)]
struct Streaming {
    inner: Arc<MockDevice>,
    streamed: Arc<AtomicU64>,
}

#[derive(Debug)]
struct StreamingBuffer {
    inner: Box<dyn DeviceBuffer>,
    streamed: Arc<AtomicU64>,
}

impl Device for Streaming {
    fn info(&self) -> &DeviceInfo {
        self.inner.info()
    }
    fn memory_info(&self) -> Result<MemoryInfo, DeviceError> {
        self.inner.memory_info()
    }
    fn attributes(&self) -> Result<DeviceAttributes, DeviceError> {
        self.inner.attributes()
    }
    fn capabilities(&self) -> DeviceCapabilities {
        DeviceCapabilities {
            stream_from: true,
            ..DeviceCapabilities::default()
        }
    }
    fn alloc(&self, bytes: u64) -> Result<Box<dyn DeviceBuffer>, DeviceError> {
        Ok(Box::new(StreamingBuffer {
            inner: self.inner.alloc(bytes)?,
            streamed: self.streamed.clone(),
        }))
    }
}

impl DeviceBuffer for StreamingBuffer {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), DeviceError> {
        self.inner.write_at(offset, data)
    }
    fn read_at(&self, offset: u64, out: &mut [u8]) -> Result<(), DeviceError> {
        self.inner.read_at(offset, out)
    }
    fn stream_from(
        &mut self,
        reader: &mut dyn Read,
        chunk: usize,
        on_chunk: &mut dyn FnMut(&[u8]),
    ) -> Result<u64, StreamError> {
        let mut buf = vec![0u8; chunk];
        let mut offset = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break Ok(offset),
                Ok(n) => n,
                Err(e) => break Err(StreamError::Read(e)),
            };
            if let Err(e) = self.inner.write_at(offset, &buf[..n]) {
                break Err(StreamError::Device(e));
            }
            on_chunk(&buf[..n]);
            offset += n as u64;
            self.streamed.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

fn manager() -> (VramManager, Arc<MockDevice>, Arc<AtomicU64>) {
    let mock = MockDevice::new(0, 64 * MIB);
    let streamed = Arc::new(AtomicU64::new(0));
    let dev: Arc<dyn Device> = Arc::new(Streaming {
        inner: mock.clone(),
        streamed: streamed.clone(),
    });
    let m = VramManager::new(
        VramConfig::builder(secret())
            .device(dev)
            .staging_bytes(64 * 1024)
            .build(),
    )
    .unwrap();
    (m, mock, streamed)
}

#[test]
fn seals_through_the_backend_pipeline_and_verify_agrees() {
    let (m, mock, streamed) = manager();
    let data = pattern(1_000_003, 5);
    let req = SealRequest::new(ModelRef::new("test:stream").unwrap(), 0);
    let a = m.seal(&req, SealSource::Bytes(&data)).unwrap();
    let b = m
        .seal(
            &req,
            SealSource::Reader {
                reader: &mut &data[..],
                len: data.len() as u64,
            },
        )
        .unwrap();
    // With a plain SHA-256 asked for, the hashing rides on the pipeline's chunks.
    let mut plain = req.clone();
    plain.compute_sha256 = true;
    let c = m.seal(&plain, SealSource::Bytes(&data)).unwrap();
    // A file goes through the pipeline too.
    let mut file = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut file, &data).unwrap();
    let d = m.seal(&req, SealSource::file(&file)).unwrap();
    assert_eq!(streamed.load(Ordering::Relaxed), 4 * data.len() as u64);
    assert_eq!(a.tree_digest(), b.tree_digest());
    assert_eq!(a.tree_digest(), c.tree_digest());
    assert_eq!(a.tree_digest(), d.tree_digest());
    drop((c, d));
    let expected = vram_crypto::tree_digest(&data, m.leaf_size());
    assert_eq!(*a.tree_digest(), expected);
    m.verify_with(&a, VerifyPolicy::Full).unwrap();
    m.verify_with(&b, VerifyPolicy::Full).unwrap();
    drop((a, b));
    assert_eq!(mock.live_allocations(), 0);
}

#[test]
fn backend_pipeline_errors_map_and_release_everything() {
    let (m, mock, _) = manager();
    let data = pattern(200_000, 1);
    let req = SealRequest::new(ModelRef::new("test:stream").unwrap(), 0);
    // Source shorter than announced.
    let e = m
        .seal(
            &req,
            SealSource::Reader {
                reader: &mut &data[..100_000],
                len: 200_000,
            },
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            VramError::LengthMismatch {
                announced: 200_000,
                read: 100_000
            }
        ),
        "{e}"
    );
    // Source longer than the buffer: the device refuses the write.
    let e = m
        .seal(
            &req,
            SealSource::Reader {
                reader: &mut &data[..],
                len: 150_000,
            },
        )
        .unwrap_err();
    assert!(matches!(e, VramError::LengthMismatch { .. }), "{e}");
    // The device fails mid-stream.
    mock.fail_write_at(70_000);
    let e = m.seal(&req, SealSource::Bytes(&data)).unwrap_err();
    assert!(matches!(e, VramError::Device { device: 0, .. }), "{e}");
    // The reader fails.
    struct Broken;
    impl Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
        }
    }
    let e = m
        .seal(
            &req,
            SealSource::Reader {
                reader: &mut Broken,
                len: 10,
            },
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            VramError::Io {
                kind: std::io::ErrorKind::ConnectionReset
            }
        ),
        "{e}"
    );
    assert_eq!(mock.live_allocations(), 0);
    assert_eq!(m.used_vram(0), 0);
}
