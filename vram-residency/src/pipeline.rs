//! One seal's data path, as orchestration only: which source goes to the
//! device by which route, and where its leaves are hashed. The pieces are a
//! floor below: the sources (`vram_core::source`: parallel readers, the
//! bounded chunk stream, the one `read_full`), the one leaf scheduler
//! (`vram_crypto`: `hash_alongside`, `hash_in_place`, `leaf_hashes_from`),
//! and the device's own routes (`DeviceBuffer::stream_from`, `fill_in_place`,
//! `hash_leaves_on_device`).
//!
//! Every route returns the same [`Hashed`]. The read-once invariant holds on
//! each: a piece of a file or reader is read once into host memory (a staging
//! buffer, or the mock's own memory) and both uploaded and hashed from there.

use crate::{SealHashing, VramError};
use std::io::Read;
use std::sync::{Mutex, PoisonError};
use vram_core::source::{stream_chunks, ParallelSlice};
use vram_core::{DeviceBuffer, DeviceError, StreamError};
use vram_crypto::{
    beside, hash_alongside, hash_leaf_run, hashing_threads, LeafSize, Sha256Digest, TreeDescriptor,
    TreeHasher, LEAF_PREFIX,
};

/// What a seal's fill needs to know besides its source: where it goes and
/// how it is hashed. Built once per seal by the manager.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SealJob {
    /// The device index, for errors.
    pub(crate) device: u32,
    /// The tree's leaf size.
    pub(crate) leaf: LeafSize,
    /// The host staging budget, in bytes.
    pub(crate) staging: usize,
    /// Whether the plain SHA-256 of the whole source is computed too.
    pub(crate) want_plain: bool,
    /// Where the leaves are hashed.
    pub(crate) hashing: SealHashing,
}

/// Where a seal's bytes come from.
pub(crate) enum SealSource<'a> {
    /// Host memory the caller keeps unchanged (the borrow sees to it).
    Slice(&'a [u8]),
    /// The first `len` bytes of a regular file, with a progress callback
    /// (bytes of each piece read, from several threads at once).
    File {
        file: &'a std::fs::File,
        len: u64,
        progress: &'a (dyn Fn(u64) + Sync),
    },
    /// Exactly `len` bytes of a reader.
    Reader {
        reader: &'a mut (dyn Read + Send),
        len: u64,
    },
}

/// What a seal's fill computed: every leaf hash in order, and the plain
/// SHA-256 when it was asked for.
#[derive(Debug)]
pub(crate) struct Hashed {
    pub(crate) leaves: Vec<Sha256Digest>,
    pub(crate) plain: Option<Sha256Digest>,
}

impl From<vram_crypto::TreeOutput> for Hashed {
    fn from(out: vram_crypto::TreeOutput) -> Self {
        Self {
            leaves: out.leaves.into_parts().1,
            plain: out.plain_sha256,
        }
    }
}

/// Copies `source` into `buffer` from offset 0 and hashes it on the way.
pub(crate) fn fill(
    buffer: &mut dyn DeviceBuffer,
    job: &SealJob,
    source: SealSource<'_>,
) -> Result<Hashed, VramError> {
    match source {
        SealSource::Slice(bytes) => from_slice(buffer, job, bytes),
        SealSource::File {
            file,
            len,
            progress,
        } => from_file(buffer, job, file, len, progress),
        SealSource::Reader { reader, len } => from_reader(buffer, job, reader, len),
    }
}

fn device_err(device: u32, source: DeviceError) -> VramError {
    VramError::Device { device, source }
}

/// A source's own failure (a read, a wrong length) as a [`VramError`]; any
/// other failure back as it was.
fn source_err(e: StreamError) -> Result<VramError, StreamError> {
    match e {
        StreamError::Read(e) => Ok(VramError::Io { kind: e.kind() }),
        StreamError::Length { announced, read } => {
            Ok(VramError::LengthMismatch { announced, read })
        }
        other => Err(other),
    }
}

/// A failure of a source stream or of a backend's own pipeline.
fn stream_err(device: u32, len: u64, e: StreamError) -> VramError {
    source_err(e).unwrap_or_else(|e| match e {
        // The source holds more bytes than the buffer it was announced for.
        StreamError::Device(DeviceError::OutOfBounds { .. }) => VramError::LengthMismatch {
            announced: len,
            read: len.saturating_add(1),
        },
        StreamError::Device(source) => device_err(device, source),
        _ => device_err(
            device,
            DeviceError::InvalidArgument {
                reason: "streamed write failed",
            },
        ),
    })
}

/// An error of a stream whose consumer is the seal: the source's own
/// failures become [`VramError`]s, the consumer's pass through.
struct Step(VramError);

impl From<StreamError> for Step {
    fn from(e: StreamError) -> Self {
        // `vram_core::source` streams read sources only; devices fail in the
        // consumer, whose errors carry their device.
        Self(source_err(e).unwrap_or(VramError::Internal {
            reason: "a source stream reported a device failure",
        }))
    }
}

/// Runs the backend's own streaming pipeline when it has one (CUDA: pinned,
/// double-buffered staging with asynchronous copies), feeding each chunk to
/// a tree hasher while its copy is in flight. `None`: it has none, and
/// nothing was read.
fn backend_stream(
    buffer: &mut dyn DeviceBuffer,
    job: &SealJob,
    reader: &mut dyn Read,
    len: u64,
    hash: bool,
) -> Option<Result<Hashed, VramError>> {
    let mut hasher = TreeHasher::new(job.leaf);
    if job.want_plain {
        hasher = hasher.with_plain_sha256();
    }
    let mut update = |chunk: &[u8]| {
        if hash {
            hasher.update(chunk);
        }
    };
    let result = buffer.stream_from(reader, job.staging.max(1), &mut update)?;
    Some(match result {
        Ok(n) if n == len => Ok(hasher.finish().into()),
        Ok(n) => Err(VramError::LengthMismatch {
            announced: len,
            read: n,
        }),
        Err(e) => Err(stream_err(job.device, len, e)),
    })
}

/// Seals from a host slice. On a device whose memory is host memory (the
/// mock), every core copies pieces into it and hashes each while it is in
/// cache, and the plain SHA-256, when asked for, has this thread to itself.
/// Otherwise the upload (the backend's own pipeline when it has one) runs on
/// this thread while the other cores hash the leaves straight from `bytes`,
/// and the plain SHA-256, when asked for, on a thread of its own.
///
/// With [`SealHashing::OnDevice`] on a device that can hash, every core fills
/// the upload instead, and the device hashes the leaves after it
/// ([`hash_on_device`]).
fn from_slice(
    buffer: &mut dyn DeviceBuffer,
    job: &SealJob,
    bytes: &[u8],
) -> Result<Hashed, VramError> {
    let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if let SealHashing::Host = job.hashing {
        // Host-visible device memory (the mock): every core copies a piece
        // and hashes it while it is in cache; the plain SHA-256, when asked
        // for, has this thread to itself meanwhile.
        let copied = in_place(buffer, job, len, |memory| {
            let copy = |offset: u64, dst: &mut [u8]| {
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                let src = bytes.get(start..start.saturating_add(dst.len())).ok_or(
                    VramError::Internal {
                        reason: "an in-place piece lies outside the source",
                    },
                )?;
                dst.copy_from_slice(src);
                Ok::<(), VramError>(())
            };
            if !job.want_plain {
                let leaves = vram_crypto::hash_in_place(job.leaf, memory, copy)?;
                return Ok(Hashed {
                    leaves,
                    plain: None,
                });
            }
            let mut plain = None;
            let leaves = vram_crypto::hash_in_place_alongside(job.leaf, memory, copy, || {
                plain = Some(vram_crypto::sha256(bytes));
                Ok(())
            })?;
            Ok(Hashed { leaves, plain })
        });
        if let Some(done) = copied {
            return done;
        }
    }
    let mut plain = None;
    let task = job
        .want_plain
        .then_some(|| plain = Some(vram_crypto::sha256(bytes)));
    let leaves = if let SealHashing::OnDevice { cross_check } = job.hashing {
        let on_device = beside(task, || {
            upload_slice(buffer, job, bytes, hashing_threads())?;
            hash_on_device(buffer, job, len, cross_check, &HostSource::Slice(bytes))
        })?;
        match on_device {
            Some(leaves) => leaves,
            // The device cannot hash: the bytes are uploaded, hash them here.
            None => vram_crypto::leaf_hashes(bytes, job.leaf).into_parts().1,
        }
    } else {
        beside(task, || {
            hash_alongside(job.leaf, bytes, || {
                upload_slice(buffer, job, bytes, copy_threads())
            })
        })?
    };
    Ok(Hashed { leaves, plain })
}

/// Runs `work` on the buffer's own memory when the backend lends it (the
/// mock: `DeviceBuffer::fill_in_place`): `work` writes every byte and
/// returns what it hashed. `None`: the backend lends no memory, nothing was
/// done. When `work` fails, the buffer reads as never written.
fn in_place<T>(
    buffer: &mut dyn DeviceBuffer,
    job: &SealJob,
    len: u64,
    work: impl FnOnce(&mut [u8]) -> Result<T, VramError>,
) -> Option<Result<T, VramError>> {
    let mut work = Some(work);
    let mut outcome: Option<Result<T, VramError>> = None;
    let lent = buffer.fill_in_place(&mut |memory: &mut [u8]| {
        let Some(work) = work.take() else {
            return Err(std::io::Error::other("the memory was lent twice"));
        };
        let result = work(memory);
        let failed = result.is_err();
        outcome = Some(result);
        if failed {
            // Tells the backend that the memory holds nothing valid.
            Err(std::io::Error::other("the in-place fill failed"))
        } else {
            Ok(())
        }
    })?;
    Some(match (lent, outcome) {
        (Ok(()), Some(Ok(t))) => Ok(t),
        (_, Some(Err(e))) => Err(e),
        (Err(e), _) => Err(stream_err(job.device, len, e)),
        (Ok(()), None) => Err(VramError::Internal {
            reason: "a backend lent its memory without calling the fill",
        }),
    })
}

/// Uploads `bytes` from offset 0: through the backend's own pipeline, its
/// staging buffers filled by `threads` threads, or in `staging`-sized writes.
///
/// (On the H200 host measured in the README, filling pinned staging from
/// every core, about 15 GB/s, beat registering the caller's pages for a
/// direct DMA, 10-12 GB/s including the registration.)
fn upload_slice(
    buffer: &mut dyn DeviceBuffer,
    job: &SealJob,
    bytes: &[u8],
    threads: usize,
) -> Result<(), VramError> {
    let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    let mut source = ParallelSlice::new(bytes, threads);
    match backend_stream(buffer, job, &mut source, len, false) {
        Some(done) => done.map(|_| ()),
        None => write_chunks(buffer, job, 0, bytes),
    }
}

/// Writes `bytes` at `base` in `staging`-sized calls.
fn write_chunks(
    buffer: &mut dyn DeviceBuffer,
    job: &SealJob,
    base: u64,
    bytes: &[u8],
) -> Result<(), VramError> {
    let mut offset = base;
    for chunk in bytes.chunks(job.staging.max(1)) {
        buffer
            .write_at(offset, chunk)
            .map_err(|e| device_err(job.device, e))?;
        offset = offset.saturating_add(chunk.len() as u64);
    }
    Ok(())
}

/// Threads that copy a slice into a backend's staging buffers: a quarter of
/// the cores, at least 1 and at most 8 (they run in bursts, alongside the
/// hashing threads). One thread's memcpy (about 10 GB/s) is slower than a
/// host-to-device DMA from pinned memory.
fn copy_threads() -> usize {
    (hashing_threads() / 4).clamp(1, 8)
}

/// Where a seal's bytes came from, for the cross-check of an on-device seal.
enum HostSource<'a> {
    Slice(&'a [u8]),
    #[cfg(unix)]
    File(&'a std::fs::File),
}

/// Largest read of a cross-checked leaf from a file (a leaf may be larger).
#[cfg(unix)]
const CROSS_CHECK_READ: usize = 4 << 20;

impl HostSource<'_> {
    /// SHA-256 of the leaf at `range` of the source, as vram-crypto hashes it.
    fn leaf_hash(
        &self,
        leaf: LeafSize,
        range: std::ops::Range<u64>,
    ) -> Result<Sha256Digest, VramError> {
        let out_of_range = || VramError::Internal {
            reason: "a cross-checked leaf lies outside the source",
        };
        match self {
            Self::Slice(bytes) => {
                let start = usize::try_from(range.start).map_err(|_| out_of_range())?;
                let end = usize::try_from(range.end).map_err(|_| out_of_range())?;
                let part = bytes.get(start..end).ok_or_else(out_of_range)?;
                let mut out = Vec::with_capacity(1);
                hash_leaf_run(leaf, part, &mut out);
                out.into_iter().next().ok_or(VramError::Internal {
                    reason: "hashing one leaf gave no hash",
                })
            }
            #[cfg(unix)]
            Self::File(file) => {
                use std::os::unix::fs::FileExt;
                let mut buf = Vec::new();
                vram_crypto::leaf_hash_from(range, CROSS_CHECK_READ, &mut buf, |offset, buf| {
                    file.read_exact_at(buf, offset)
                        .map_err(|e| VramError::Io { kind: e.kind() })
                })
            }
        }
    }
}

/// Hashes every leaf of the uploaded bytes on the device, then hashes
/// `cross_check` leaves chosen at random (from the system CSPRNG, so which
/// ones cannot be predicted) from `source` on the host: a leaf whose two
/// hashes differ did not reach the device intact, or the source changed, and
/// fails the seal. `None` when the device cannot hash on the device (the
/// caller hashes on the host instead).
fn hash_on_device(
    buffer: &dyn DeviceBuffer,
    job: &SealJob,
    len: u64,
    cross_check: u32,
    source: &HostSource<'_>,
) -> Result<Option<Vec<Sha256Digest>>, VramError> {
    let tree = TreeDescriptor::new(job.leaf, len);
    let count = tree.leaf_count();
    let raw = match buffer.hash_leaves_on_device(LEAF_PREFIX, job.leaf.bytes(), 0, count) {
        Ok(raw) => raw,
        Err(DeviceError::Unsupported { operation }) => {
            tracing::warn!(
                device = job.device,
                operation,
                "this device cannot hash: the seal hashes on the host"
            );
            return Ok(None);
        }
        Err(e) => return Err(device_err(job.device, e)),
    };
    if u64::try_from(raw.len()).ok() != Some(count) {
        return Err(VramError::Internal {
            reason: "the device returned a wrong number of leaf hashes",
        });
    }
    let leaves: Vec<Sha256Digest> = raw.into_iter().map(Sha256Digest).collect();
    let indices = if u64::from(cross_check) >= count {
        (0..count).collect()
    } else {
        crate::sampling::random_leaf_indices(count, cross_check)?
    };
    for i in indices {
        let range = tree.leaf_range(i).ok_or(VramError::Internal {
            reason: "a cross-checked leaf index is out of range",
        })?;
        let host = source.leaf_hash(job.leaf, range.clone())?;
        let on_device = usize::try_from(i).ok().and_then(|i| leaves.get(i));
        if !on_device.is_some_and(|d| d.ct_eq(&host)) {
            return Err(VramError::UploadMismatch {
                device: job.device,
                leaf: i,
                start: range.start,
                end: range.end,
            });
        }
    }
    Ok(Some(leaves))
}

/// Seals exactly `len` bytes from `reader`.
///
/// A backend with its own pipeline hashes each staging chunk while its copy is
/// in flight. Otherwise each staging chunk is a whole number of leaves, read
/// once, then copied and hashed like a slice on every core, with the plain
/// SHA-256 (when asked for) fed the same chunk on a thread of its own. A
/// staging buffer smaller than a leaf streams through a tree hasher instead.
fn from_reader(
    buffer: &mut dyn DeviceBuffer,
    job: &SealJob,
    reader: &mut (dyn Read + Send),
    len: u64,
) -> Result<Hashed, VramError> {
    if let Some(done) = backend_stream(buffer, job, reader, len, true) {
        return done;
    }
    let leaf_bytes = usize::try_from(job.leaf.bytes()).unwrap_or(usize::MAX);
    let whole_leaves = job
        .staging
        .checked_div(leaf_bytes)
        .unwrap_or(0)
        .saturating_mul(leaf_bytes);
    if whole_leaves > 0 {
        let streamed = in_place(buffer, job, len, |memory| {
            stream_in_place(job, reader, len, memory, whole_leaves)
        });
        if let Some(done) = streamed {
            return done;
        }
    }
    if whole_leaves == 0 {
        let mut hasher = TreeHasher::new(job.leaf);
        if job.want_plain {
            hasher = hasher.with_plain_sha256();
        }
        stream_chunks(reader, Some(len), job.staging, |offset, chunk| {
            beside(Some(|| hasher.update(chunk)), || {
                buffer
                    .write_at(offset, chunk)
                    .map_err(|e| device_err(job.device, e))
            })
            .map_err(Step)
        })
        .map_err(|Step(e)| e)?;
        return Ok(hasher.finish().into());
    }
    let mut leaves = Vec::new();
    let mut plain = job.want_plain.then(vram_crypto::Sha256Stream::new);
    stream_chunks(reader, Some(len), whole_leaves, |offset, chunk| {
        let task = plain.as_mut().map(|p| move || p.update(chunk));
        beside(task, || {
            let hashed =
                hash_alongside(job.leaf, chunk, || write_chunks(buffer, job, offset, chunk))?;
            leaves.extend(hashed);
            Ok(())
        })
        .map_err(Step)
    })
    .map_err(|Step(e)| e)?;
    Ok(Hashed {
        leaves,
        plain: plain.map(vram_crypto::Sha256Stream::finish),
    })
}

/// Streams exactly `len` bytes of `reader` into `memory` (the device's own
/// memory, lent by the backend) in pieces of `piece` bytes (whole leaves):
/// `vram_core::source::stream_into` reads each piece once, straight into the
/// memory it will occupy, on a thread of its own, while this thread hashes the
/// piece before it (with the other cores, and the plain SHA-256 beside them
/// when asked for). One copy, no staging buffer; the bytes hashed are the
/// bytes the device holds.
fn stream_in_place(
    job: &SealJob,
    reader: &mut (dyn Read + Send),
    len: u64,
    memory: &mut [u8],
    piece: usize,
) -> Result<Hashed, VramError> {
    let want = usize::try_from(len).unwrap_or(usize::MAX);
    let memory = memory.get_mut(..want).ok_or(VramError::Internal {
        reason: "the lent memory is shorter than the seal",
    })?;
    let mut leaves = Vec::new();
    let mut plain = job.want_plain.then(vram_crypto::Sha256Stream::new);
    vram_core::source::stream_into(reader, memory, piece, |chunk| {
        let hashed = match plain.as_mut() {
            Some(p) => hash_alongside(job.leaf, chunk, || {
                p.update(chunk);
                Ok::<(), VramError>(())
            }),
            None => Ok(vram_crypto::leaf_hashes(chunk, job.leaf).into_parts().1),
        };
        leaves.extend(hashed.map_err(Step)?);
        Ok(())
    })
    .map_err(|Step(e)| e)?;
    Ok(Hashed {
        leaves,
        plain: plain.map(vram_crypto::Sha256Stream::finish),
    })
}

/// Seals the first `len` bytes of a regular file.
///
/// On a device whose memory is host memory (the mock), with no plain
/// SHA-256 asked for, every core reads pieces of the file straight into the
/// memory they will occupy and hashes them there ([`vram_crypto::hash_in_place`]):
/// one copy, no staging. A backend with its own pipeline, or a seal that also
/// computes the plain SHA-256 (one ordered stream), reads the file in order,
/// each staging chunk filled by several threads' positional reads
/// (`vram_core::source::ParallelFile`; the file's cursor is not used). With
/// [`SealHashing::OnDevice`] (and no plain SHA-256) on a device that can
/// hash, every core fills the upload and the device hashes it
/// ([`hash_on_device`]).
fn from_file(
    buffer: &mut dyn DeviceBuffer,
    job: &SealJob,
    file: &std::fs::File,
    len: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Hashed, VramError> {
    #[cfg(unix)]
    let out = from_file_unix(buffer, job, file, len, progress);
    #[cfg(not(unix))]
    let out = (|| {
        use std::io::{Seek, SeekFrom};
        let mut stream = file;
        stream
            .seek(SeekFrom::Start(0))
            .map_err(|e| VramError::Io { kind: e.kind() })?;
        let mut reader = Reported {
            inner: stream,
            progress,
        };
        let job = SealJob {
            hashing: SealHashing::Host,
            ..*job
        };
        from_reader(buffer, &job, &mut reader, len)
    })();
    // The file must not have changed length while it was read. A file cut
    // short shows first as a short positional read (UnexpectedEof): that is
    // the same event as a file that grew, and is reported the same way.
    let now = file
        .metadata()
        .map_err(|e| VramError::Io { kind: e.kind() })?
        .len();
    match out {
        Err(VramError::Io {
            kind: std::io::ErrorKind::UnexpectedEof,
        }) if now < len => Err(VramError::LengthMismatch {
            announced: len,
            read: now,
        }),
        Err(e) => Err(e),
        Ok(_) if now != len => Err(VramError::LengthMismatch {
            announced: len,
            read: now,
        }),
        Ok(out) => Ok(out),
    }
}

#[cfg(unix)]
fn from_file_unix(
    buffer: &mut dyn DeviceBuffer,
    job: &SealJob,
    file: &std::fs::File,
    len: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Hashed, VramError> {
    use std::os::unix::fs::FileExt;
    use vram_core::source::ParallelFile;
    let io = |e: std::io::Error| VramError::Io { kind: e.kind() };
    let on_device = match job.hashing {
        SealHashing::OnDevice { cross_check } if !job.want_plain => Some(cross_check),
        _ => None,
    };
    let threads = on_device.map_or_else(copy_threads, |_| hashing_threads());
    let mut reader = Reported {
        inner: ParallelFile::new(file, len, threads),
        progress,
    };
    if let Some(cross_check) = on_device {
        match backend_stream(buffer, job, &mut reader, len, false) {
            Some(done) => {
                done?;
            }
            None => {
                stream_chunks(&mut reader, Some(len), job.staging, |offset, chunk| {
                    write_chunks(buffer, job, offset, chunk).map_err(Step)
                })
                .map_err(|Step(e)| e)?;
            }
        }
        let leaves = match hash_on_device(buffer, job, len, cross_check, &HostSource::File(file))? {
            Some(leaves) => leaves,
            // The device cannot hash: hash the file here, as a host seal
            // would (the seal then commits to the source's bytes).
            None => {
                vram_crypto::leaf_hashes_from(job.leaf, len, job.staging, |offset, buf| {
                    file.read_exact_at(buf, offset).map_err(io)
                })?
                .into_parts()
                .1
            }
        };
        return Ok(Hashed {
            leaves,
            plain: None,
        });
    }
    if job.want_plain {
        return from_reader(buffer, job, &mut reader, len);
    }
    if let Some(done) = backend_stream(buffer, job, &mut reader, len, true) {
        return done;
    }
    // Host-visible device memory (the mock): every core reads its pieces of
    // the file straight into the memory they will occupy and hashes them
    // there. One copy, no staging buffers.
    let filled = in_place(buffer, job, len, |memory| {
        vram_crypto::hash_in_place(job.leaf, memory, |offset, dst: &mut [u8]| {
            file.read_exact_at(dst, offset).map_err(io)?;
            progress(dst.len() as u64);
            Ok(())
        })
    });
    if let Some(leaves) = filled {
        return Ok(Hashed {
            leaves: leaves?,
            plain: None,
        });
    }
    // Any other device: every core reads its pieces, writes them (the writes
    // are serialized) and hashes them.
    let buffer = Mutex::new(buffer);
    let leaves = vram_crypto::leaf_hashes_from(job.leaf, len, job.staging, |offset, buf| {
        file.read_exact_at(buf, offset).map_err(io)?;
        buffer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write_at(offset, buf)
            .map_err(|e| device_err(job.device, e))?;
        progress(buf.len() as u64);
        Ok::<(), VramError>(())
    })?;
    Ok(Hashed {
        leaves: leaves.into_parts().1,
        plain: None,
    })
}

/// A reader that reports each read's length to `progress`.
struct Reported<'a, R> {
    inner: R,
    progress: &'a (dyn Fn(u64) + Sync),
}

impl<R: Read> Read for Reported<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.progress)(n as u64);
        Ok(n)
    }
}
