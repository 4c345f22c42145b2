//! Copy-and-hash: the bytes of a seal go to the device and through the leaf
//! hashing at once. One thread uploads (through the backend's own pipeline
//! when it has one) while the other cores hash lane-width batches of leaves
//! from the same host memory, and the plain SHA-256, when asked for, runs on a
//! thread of its own. Readers are read chunk by chunk on a helper thread
//! (host memory: at most three staging chunks); regular files are read with
//! positional reads by every core.

use crate::{SealHashing, VramError};
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex, PoisonError};
use vram_core::{DeviceBuffer, DeviceError, StreamError};
use vram_crypto::{
    hash_leaf_run, hash_leaf_run_threads, hashing_threads, lane_width, LeafSize, Sha256Digest,
    TreeDescriptor, TreeHasher, LEAF_PREFIX,
};

fn device_err(device: u32, source: DeviceError) -> VramError {
    VramError::Device { device, source }
}

/// Copies one chunk to the device while hashing it on the calling thread.
fn write_and_hash(
    buffer: &mut dyn DeviceBuffer,
    device: u32,
    offset: u64,
    chunk: &[u8],
    hasher: &mut TreeHasher,
) -> Result<(), VramError> {
    alongside(Some(|| hasher.update(chunk)), || {
        buffer
            .write_at(offset, chunk)
            .map_err(|e| device_err(device, e))
    })
}

/// Runs the backend's own streaming pipeline when it has one (CUDA: pinned,
/// double-buffered staging with asynchronous copies). `None`: it has none.
fn backend_stream(
    buffer: &mut dyn DeviceBuffer,
    device: u32,
    reader: &mut dyn Read,
    len: u64,
    on_chunk: &mut dyn FnMut(&[u8]),
    staging: usize,
) -> Option<Result<(), VramError>> {
    let result = buffer.stream_from(reader, staging.max(1), on_chunk)?;
    Some(match result {
        Ok(n) if n == len => Ok(()),
        Ok(n) => Err(VramError::LengthMismatch {
            announced: len,
            read: n,
        }),
        Err(StreamError::Read(e)) => Err(VramError::Io { kind: e.kind() }),
        Err(StreamError::Device(DeviceError::OutOfBounds { .. })) => {
            Err(VramError::LengthMismatch {
                announced: len,
                read: len.saturating_add(1),
            })
        }
        Err(StreamError::Device(source)) => Err(device_err(device, source)),
        Err(_) => Err(device_err(
            device,
            DeviceError::InvalidArgument {
                reason: "streamed write failed",
            },
        )),
    })
}

/// What a seal path hashed itself, instead of feeding the bytes to the
/// caller's `TreeHasher`.
#[derive(Debug)]
pub(crate) struct Hashed {
    /// Every leaf hash, in order.
    pub(crate) leaves: Vec<Sha256Digest>,
    /// The plain SHA-256 of the whole source, when it was asked for.
    pub(crate) plain: Option<Sha256Digest>,
}

/// Runs `work` on the calling thread while `task` (when given) runs on another
/// thread: hashing (the plain SHA-256, or a tree hasher) beside a copy. When
/// the OS will not start the thread, `task` runs here afterwards, so a refused
/// thread costs speed, never a panic or a missing hash.
fn alongside<T>(
    task: Option<impl FnOnce() + Send>,
    work: impl FnOnce() -> Result<T, VramError>,
) -> Result<T, VramError> {
    if task.is_none() {
        return work();
    }
    let task = Mutex::new(task);
    let take = || task.lock().unwrap_or_else(PoisonError::into_inner).take();
    let result = std::thread::scope(|s| {
        let side = std::thread::Builder::new()
            .name("vram-seal-side".into())
            .spawn_scoped(s, || {
                if let Some(t) = take() {
                    t();
                }
            });
        let result = work();
        if let Ok(handle) = side {
            // A panic in the task leaves it neither run nor rerun: reported.
            if handle.join().is_err() {
                return Err(VramError::Internal {
                    reason: "a hashing thread panicked",
                });
            }
        }
        result
    });
    if let Some(t) = take() {
        t();
    }
    result
}

/// Seals from a host slice. The upload (the backend's own pipeline when it
/// has one) runs on this thread while the other cores hash the leaves straight
/// from `bytes`, and the plain SHA-256, when asked for, on a thread of its own.
///
/// With [`SealHashing::OnDevice`] on a device that can hash, every core fills
/// the upload instead, and the device hashes the leaves after it
/// ([`hash_on_device`]).
pub(crate) fn copy_slice(
    buffer: &mut dyn DeviceBuffer,
    device: u32,
    bytes: &[u8],
    staging: usize,
    leaf: LeafSize,
    want_plain: bool,
    hashing: SealHashing,
) -> Result<Hashed, VramError> {
    let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    let mut leaves = Vec::new();
    let mut plain = None;
    let task = want_plain.then_some(|| plain = Some(vram_crypto::sha256(bytes)));
    if let SealHashing::OnDevice { cross_check } = hashing {
        let on_device = alongside(task, || {
            upload_slice(buffer, device, bytes, staging, hashing_threads())?;
            hash_on_device(
                buffer,
                device,
                TreeDescriptor::new(leaf, len),
                cross_check,
                Source::Slice(bytes),
            )
        })?;
        return Ok(Hashed {
            leaves: match on_device {
                Some(leaves) => leaves,
                // The device cannot hash: the bytes are uploaded, hash them here.
                None => vram_crypto::leaf_hashes(bytes, leaf).into_parts().1,
            },
            plain,
        });
    }
    alongside(task, || {
        copy_and_hash_leaves(bytes, leaf, &mut leaves, || {
            upload_slice(buffer, device, bytes, staging, copy_threads())
        })
    })?;
    Ok(Hashed { leaves, plain })
}

/// Uploads `bytes` from offset 0: through the backend's own pipeline, its
/// staging buffers filled by `threads` threads, or in `staging`-sized writes.
///
/// (On the H200 host measured in the README, filling pinned staging from
/// every core, about 15 GB/s, beat registering the caller's pages for a
/// direct DMA, 10-12 GB/s including the registration.)
fn upload_slice(
    buffer: &mut dyn DeviceBuffer,
    device: u32,
    bytes: &[u8],
    staging: usize,
    threads: usize,
) -> Result<(), VramError> {
    let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    let mut source = ParallelSlice::new(bytes, threads);
    match backend_stream(buffer, device, &mut source, len, &mut |_| {}, staging) {
        Some(done) => done,
        None => write_chunks(buffer, device, 0, bytes, staging),
    }
}

/// Where a seal's bytes came from, for the cross-check of an on-device seal.
enum Source<'a> {
    Slice(&'a [u8]),
    #[cfg(unix)]
    File(&'a std::fs::File),
}

impl Source<'_> {
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

/// Largest read of a cross-checked leaf from a file (a leaf may be larger).
#[cfg(unix)]
const CROSS_CHECK_READ: usize = 4 << 20;

/// Hashes every leaf of the uploaded bytes on the device, then hashes
/// `cross_check` leaves chosen at random (from the system CSPRNG, so which
/// ones cannot be predicted) from `source` on the host: a leaf whose two
/// hashes differ did not reach the device intact, or the source changed, and
/// fails the seal. `None` when the device cannot hash on the device (the
/// caller hashes on the host instead).
fn hash_on_device(
    buffer: &dyn DeviceBuffer,
    device: u32,
    tree: TreeDescriptor,
    cross_check: u32,
    source: Source<'_>,
) -> Result<Option<Vec<Sha256Digest>>, VramError> {
    let count = tree.leaf_count();
    let leaf = tree.leaf_size;
    let raw = match buffer.hash_leaves_on_device(LEAF_PREFIX, leaf.bytes(), 0, count) {
        Ok(raw) => raw,
        Err(DeviceError::Unsupported { operation }) => {
            tracing::warn!(
                device,
                operation,
                "this device cannot hash: the seal hashes on the host"
            );
            return Ok(None);
        }
        Err(e) => return Err(device_err(device, e)),
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
        let host = source.leaf_hash(leaf, range.clone())?;
        let on_device = usize::try_from(i).ok().and_then(|i| leaves.get(i));
        if !on_device.is_some_and(|d| d.ct_eq(&host)) {
            return Err(VramError::UploadMismatch {
                device,
                leaf: i,
                start: range.start,
                end: range.end,
            });
        }
    }
    Ok(Some(leaves))
}

/// Threads that copy a slice into a backend's staging buffers: a quarter of
/// the cores, at least 1 and at most 8 (they run in bursts, alongside the
/// hashing threads). One thread's memcpy (about 10 GB/s) is slower than a
/// host-to-device DMA from pinned memory.
fn copy_threads() -> usize {
    (hashing_threads() / 4).clamp(1, 8)
}

/// Bytes each core reads into host-visible device memory at a time (rounded
/// down to whole leaves, at least one): large enough to amortise a read call,
/// small enough that a core hashes what it just read while it is in cache.
#[cfg(unix)]
const IN_PLACE_PIECE: usize = 4 << 20;

/// Reads smaller than this are filled by the calling thread alone.
const SPLIT_MIN: usize = 4 << 20;

/// Fills `dst` by calling `fill(offset_in_dst, part)` on disjoint parts of it,
/// from up to `threads` threads. Parts are taken from a shared list by the
/// calling thread and the helpers, so a helper the OS will not start costs
/// speed, not bytes. Returns the first error.
fn fill_split(
    dst: &mut [u8],
    threads: usize,
    fill: impl Fn(usize, &mut [u8]) -> std::io::Result<()> + Sync,
) -> std::io::Result<()> {
    if threads < 2 || dst.len() < SPLIT_MIN {
        return fill(0, dst);
    }
    let part = dst.len().div_ceil(threads);
    let parts = Mutex::new(
        dst.chunks_mut(part)
            .enumerate()
            .map(|(i, d)| (i.saturating_mul(part), d))
            .collect::<Vec<_>>(),
    );
    let failed: Mutex<Option<std::io::Error>> = Mutex::new(None);
    let work = || loop {
        let next = parts.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let Some((at, d)) = next else { break };
        if let Err(e) = fill(at, d) {
            failed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert(e);
            break;
        }
    };
    std::thread::scope(|s| {
        for _ in 1..threads {
            let _ = std::thread::Builder::new()
                .name("vram-seal-fill".into())
                .spawn_scoped(s, work);
        }
        work();
    });
    match failed.into_inner().unwrap_or_else(PoisonError::into_inner) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A host slice read as a [`Read`] whose large reads are split over several
/// threads, each copying a disjoint part of the destination: a backend's
/// pipeline that fills pinned staging buffers from a reader then fills them at
/// memory bandwidth, not at one core's memcpy rate.
struct ParallelSlice<'a> {
    rest: &'a [u8],
    threads: usize,
}

impl<'a> ParallelSlice<'a> {
    fn new(bytes: &'a [u8], threads: usize) -> Self {
        Self {
            rest: bytes,
            threads: threads.max(1),
        }
    }
}

impl Read for ParallelSlice<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.rest.len());
        let (src, rest) = self.rest.split_at(n);
        let Some(dst) = buf.get_mut(..n) else {
            return Ok(0);
        };
        fill_split(dst, self.threads, |at, part| {
            let from = src
                .get(at..at.saturating_add(part.len()))
                .ok_or_else(|| std::io::Error::other("split out of range"))?;
            part.copy_from_slice(from);
            Ok(())
        })?;
        self.rest = rest;
        Ok(n)
    }
}

/// The first `end` bytes of a file read as a [`Read`] with positional reads
/// (the file's cursor is never used or moved), large reads split over several
/// threads: a backend's pipeline fills its pinned staging buffers from the
/// page cache or the disk at several threads' rate.
#[cfg(unix)]
struct ParallelFile<'a> {
    file: &'a std::fs::File,
    offset: u64,
    end: u64,
    threads: usize,
}

#[cfg(unix)]
impl Read for ParallelFile<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let left = usize::try_from(self.end.saturating_sub(self.offset)).unwrap_or(usize::MAX);
        let n = buf.len().min(left);
        let Some(dst) = buf.get_mut(..n) else {
            return Ok(0);
        };
        let base = self.offset;
        fill_split(dst, self.threads, |at, part| {
            self.file
                .read_exact_at(part, base.saturating_add(at as u64))
        })?;
        self.offset = self.offset.saturating_add(n as u64);
        Ok(n)
    }
}

/// Writes `bytes` at `base` in `staging`-sized calls.
fn write_chunks(
    buffer: &mut dyn DeviceBuffer,
    device: u32,
    base: u64,
    bytes: &[u8],
    staging: usize,
) -> Result<(), VramError> {
    let mut offset = base;
    for chunk in bytes.chunks(staging.max(1)) {
        buffer
            .write_at(offset, chunk)
            .map_err(|e| device_err(device, e))?;
        offset = offset.saturating_add(chunk.len() as u64);
    }
    Ok(())
}

/// Copies and hashes host bytes at once: `upload` runs on the calling thread
/// while every other core hashes leaves of `bytes`; when the upload is done the
/// calling thread hashes too. Leaves are handed out in batches of the hashing
/// backend's lane width from one shared counter, so the cores finish together
/// whatever an upload costs relative to a hash on this machine (no estimate to
/// get wrong), and every batch fills all SIMD lanes (a batch of 2 leaves on a
/// 4-lane backend costs as much as 4).
///
/// `bytes` start at a leaf boundary of the shard; their leaf hashes are
/// appended to `out`. When `upload` fails, hashing stops early and its error
/// is returned.
fn copy_and_hash_leaves(
    bytes: &[u8],
    leaf: LeafSize,
    out: &mut Vec<Sha256Digest>,
    upload: impl FnOnce() -> Result<(), VramError>,
) -> Result<(), VramError> {
    let leaf_bytes = usize::try_from(leaf.bytes()).unwrap_or(usize::MAX);
    let batch_bytes = leaf_bytes.saturating_mul(lane_width().max(1));
    let batches = bytes.len().div_ceil(batch_bytes);
    let next = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    // Hashes batches until none is left (or the upload failed); returns them
    // tagged with their batch index.
    let hash_batches = || {
        let mut done: Vec<(usize, Vec<Sha256Digest>)> = Vec::new();
        while !abort.load(Ordering::Relaxed) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let start = i.saturating_mul(batch_bytes);
            let Some(part) = bytes.get(start..start.saturating_add(batch_bytes).min(bytes.len()))
            else {
                break;
            };
            if part.is_empty() {
                break;
            }
            let mut out = Vec::with_capacity(lane_width());
            hash_leaf_run_threads(leaf, part, 1, &mut out);
            done.push((i, out));
        }
        done
    };
    let helpers = hashing_threads().max(1).saturating_sub(1);
    let (uploaded, mut parts) = std::thread::scope(|s| {
        // A helper the OS will not start is simply missing: the shared
        // counter hands its batches to the others.
        let handles: Vec<_> = (0..helpers)
            .filter_map(|_| {
                std::thread::Builder::new()
                    .name("vram-seal-hash".into())
                    .spawn_scoped(s, hash_batches)
                    .ok()
            })
            .collect();
        let uploaded = upload();
        if uploaded.is_err() {
            abort.store(true, Ordering::Relaxed);
        }
        let mut parts = hash_batches();
        for h in handles {
            parts.extend(h.join().unwrap_or_default());
        }
        (uploaded, parts)
    });
    uploaded?;
    parts.sort_unstable_by_key(|(i, _)| *i);
    let complete = parts.len() == batches && parts.iter().enumerate().all(|(k, (i, _))| k == *i);
    if !complete {
        return Err(VramError::Internal {
            reason: "a leaf hashing thread panicked",
        });
    }
    out.reserve(bytes.len().div_ceil(leaf_bytes));
    for (_, hashes) in parts {
        out.extend(hashes);
    }
    Ok(())
}

/// Seals exactly `len` bytes from `reader`. Returns the hashes when it
/// computed them itself, `None` when they went through `hasher` (a backend
/// with its own pipeline, or a staging buffer smaller than a leaf).
///
/// Otherwise each staging chunk is a whole number of leaves, read once, then
/// copied and hashed like a slice on every core, with the plain SHA-256 (when
/// asked for) fed the same chunk on a thread of its own.
#[allow(clippy::too_many_arguments)]
pub(crate) fn copy_reader<R: Read + Send>(
    buffer: &mut dyn DeviceBuffer,
    device: u32,
    reader: R,
    len: u64,
    hasher: &mut TreeHasher,
    staging: usize,
    leaf: LeafSize,
    want_plain: bool,
) -> Result<Option<Hashed>, VramError> {
    let mut reader = reader;
    let mut update = |chunk: &[u8]| hasher.update(chunk);
    if let Some(done) = backend_stream(buffer, device, &mut reader, len, &mut update, staging) {
        return done.map(|()| None);
    }
    let leaf_bytes = usize::try_from(leaf.bytes()).unwrap_or(usize::MAX);
    let whole_leaves = staging
        .checked_div(leaf_bytes)
        .unwrap_or(0)
        .saturating_mul(leaf_bytes);
    if whole_leaves == 0 {
        return stream_chunks(reader, Some(len), staging, |offset, chunk| {
            write_and_hash(buffer, device, offset, chunk, hasher)
        })
        .map(|_| None);
    }
    let mut leaves = Vec::new();
    let mut plain = want_plain.then(vram_crypto::Sha256Stream::new);
    stream_chunks(reader, Some(len), whole_leaves, |offset, chunk| {
        let task = plain.as_mut().map(|p| move || p.update(chunk));
        alongside(task, || {
            copy_and_hash_leaves(chunk, leaf, &mut leaves, || {
                write_chunks(buffer, device, offset, chunk, staging)
            })
        })
    })?;
    Ok(Some(Hashed {
        leaves,
        plain: plain.map(vram_crypto::Sha256Stream::finish),
    }))
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

/// A regular file to seal: its first `len` bytes, with a progress callback
/// (bytes of each piece read, from several threads at once).
pub(crate) struct FileSource<'a> {
    pub(crate) file: &'a std::fs::File,
    pub(crate) len: u64,
    pub(crate) progress: &'a (dyn Fn(u64) + Sync),
}

/// Seals the first `len` bytes of a regular file. Returns the leaf hashes
/// when it computed them itself, `None` when they went through `hasher`.
///
/// A backend with its own pipeline, or a seal that also computes the plain
/// SHA-256 (one sequential stream), reads the file in order, each staging
/// chunk filled by several threads' positional reads ([`ParallelFile`]; the
/// file's cursor is not used). Otherwise every core reads its own contiguous
/// range of leaves with positional reads (one share of the staging budget
/// per core), writes it to the device (writes are serialized) and hashes it,
/// so the reads, copies and hashing of different cores overlap instead of
/// funnelling through one reader thread. With [`SealHashing::OnDevice`] (and
/// no plain SHA-256) on a device that can hash, every core fills the upload
/// and the device hashes it ([`hash_on_device`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn copy_file(
    buffer: &mut dyn DeviceBuffer,
    device: u32,
    source: FileSource<'_>,
    hasher: &mut TreeHasher,
    staging: usize,
    leaf: LeafSize,
    want_plain: bool,
    hashing: SealHashing,
) -> Result<Option<Hashed>, VramError> {
    let FileSource {
        file,
        len,
        progress,
    } = source;
    let io = |e: std::io::Error| VramError::Io { kind: e.kind() };
    #[cfg(unix)]
    let out = (|| {
        let on_device = match hashing {
            SealHashing::OnDevice { cross_check } if !want_plain => Some(cross_check),
            _ => None,
        };
        let mut reader = Reported {
            inner: ParallelFile {
                file,
                offset: 0,
                end: len,
                threads: on_device.map_or_else(copy_threads, |_| hashing_threads()),
            },
            progress,
        };
        if let Some(cross_check) = on_device {
            let mut no_hashing = |_: &[u8]| {};
            let uploaded =
                match backend_stream(buffer, device, &mut reader, len, &mut no_hashing, staging) {
                    Some(done) => done,
                    None => stream_chunks(&mut reader, Some(len), staging, |offset, chunk| {
                        write_chunks(buffer, device, offset, chunk, staging)
                    })
                    .map(|_| ()),
                };
            uploaded?;
            let tree = TreeDescriptor::new(leaf, len);
            let leaves =
                match hash_on_device(buffer, device, tree, cross_check, Source::File(file))? {
                    Some(leaves) => leaves,
                    // The device cannot hash: hash the file here, as a host seal
                    // would (the seal then commits to the source's bytes).
                    None => {
                        vram_crypto::leaf_hashes_from(leaf, len, staging, |offset, buf| {
                            use std::os::unix::fs::FileExt;
                            file.read_exact_at(buf, offset).map_err(io)
                        })?
                        .into_parts()
                        .1
                    }
                };
            Ok(Some(Hashed {
                leaves,
                plain: None,
            }))
        } else if want_plain {
            copy_reader(buffer, device, reader, len, hasher, staging, leaf, true)
        } else {
            let mut update = |chunk: &[u8]| hasher.update(chunk);
            match backend_stream(buffer, device, &mut reader, len, &mut update, staging) {
                Some(done) => done.map(|()| None),
                None => Ok(Some(Hashed {
                    leaves: positional(buffer, device, file, len, staging, leaf, progress)?,
                    plain: None,
                })),
            }
        }
    })();
    #[cfg(not(unix))]
    let out = (|| {
        use std::io::{Seek, SeekFrom};
        let _ = hashing;
        let mut stream = file;
        stream.seek(SeekFrom::Start(0)).map_err(io)?;
        let reader = Reported {
            inner: stream,
            progress,
        };
        copy_reader(
            buffer, device, reader, len, hasher, staging, leaf, want_plain,
        )
    })();
    // The file must not have changed length while it was read. A file cut
    // short shows first as a short positional read (UnexpectedEof): that is
    // the same event as a file that grew, and is reported the same way.
    let now = file.metadata().map_err(io)?.len();
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
fn positional(
    buffer: &mut dyn DeviceBuffer,
    device: u32,
    file: &std::fs::File,
    len: u64,
    staging: usize,
    leaf: LeafSize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<Sha256Digest>, VramError> {
    use std::os::unix::fs::FileExt;
    // Host-visible device memory (the mock): every core reads its pieces of
    // the file straight into the memory they will occupy and hashes them
    // there. One copy, no staging buffers.
    let leaf_bytes = usize::try_from(leaf.bytes()).unwrap_or(usize::MAX);
    let piece = IN_PLACE_PIECE
        .checked_div(leaf_bytes)
        .unwrap_or(0)
        .max(1)
        .saturating_mul(leaf_bytes);
    let hashed: Mutex<Vec<(u64, Vec<Sha256Digest>)>> = Mutex::new(Vec::new());
    let in_place = buffer.fill_in_place(piece, hashing_threads(), &|offset, dst: &mut [u8]| {
        file.read_exact_at(dst, offset)?;
        let mut out = Vec::with_capacity(dst.len().div_ceil(leaf_bytes.max(1)));
        hash_leaf_run(leaf, dst, &mut out);
        hashed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((offset, out));
        progress(dst.len() as u64);
        Ok(())
    });
    match in_place {
        Some(Ok(())) => {
            let mut parts = hashed.into_inner().unwrap_or_else(PoisonError::into_inner);
            parts.sort_unstable_by_key(|(offset, _)| *offset);
            return Ok(parts.into_iter().flat_map(|(_, h)| h).collect());
        }
        Some(Err(StreamError::Read(e))) => return Err(VramError::Io { kind: e.kind() }),
        Some(Err(StreamError::Device(e))) => return Err(device_err(device, e)),
        Some(Err(_)) => {
            return Err(VramError::Internal {
                reason: "an in-place fill failed without a cause",
            })
        }
        None => {}
    }
    let buffer = Mutex::new(buffer);
    let leaves = vram_crypto::leaf_hashes_from(leaf, len, staging, |offset, buf: &mut [u8]| {
        file.read_exact_at(buf, offset)
            .map_err(|e| VramError::Io { kind: e.kind() })?;
        buffer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write_at(offset, buf)
            .map_err(|e| device_err(device, e))?;
        progress(buf.len() as u64);
        Ok::<(), VramError>(())
    })?;
    Ok(leaves.into_parts().1)
}

/// Streams `reader` to `consume` in chunks of `staging` bytes (the last may be
/// shorter), reading chunk N+1 on a helper thread while `consume` works on
/// chunk N. At most three chunk buffers exist at once, so host memory stays
/// O(staging) whatever the length.
///
/// With `len = Some(n)` the reader must yield exactly `n` bytes
/// ([`VramError::LengthMismatch`] otherwise); with `None` it is read to EOF.
/// Returns the number of bytes consumed.
///
/// # Errors
/// [`VramError::Io`] for read failures, [`VramError::LengthMismatch`], or the
/// first error returned by `consume` (which stops the stream).
pub fn stream_chunks<R: Read + Send>(
    mut reader: R,
    len: Option<u64>,
    staging: usize,
    mut consume: impl FnMut(u64, &[u8]) -> Result<(), VramError>,
) -> Result<u64, VramError> {
    let staging = staging.max(1);
    // Filled chunks flow to the consumer; emptied buffers flow back.
    let (full_tx, full_rx) = mpsc::sync_channel::<Result<Vec<u8>, VramError>>(1);
    let (empty_tx, empty_rx) = mpsc::sync_channel::<Vec<u8>>(2);
    for _ in 0..2 {
        let _ = empty_tx.send(Vec::with_capacity(staging));
    }
    std::thread::scope(|s| {
        let reader_thread = std::thread::Builder::new()
            .name("vram-seal-read".into())
            .spawn_scoped(s, move || {
                let mut done = 0u64;
                loop {
                    let remaining = len.map_or(u64::MAX, |l| l.saturating_sub(done));
                    if remaining == 0 {
                        break;
                    }
                    let Ok(mut buf) = empty_rx.recv() else { return };
                    let want = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(staging);
                    buf.clear();
                    buf.resize(want, 0);
                    match read_full(&mut reader, &mut buf) {
                        Err(e) => {
                            let _ = full_tx.send(Err(e));
                            return;
                        }
                        Ok(n) => {
                            done = done.saturating_add(n as u64);
                            if n < want {
                                if let Some(announced) = len {
                                    let _ = full_tx.send(Err(VramError::LengthMismatch {
                                        announced,
                                        read: done,
                                    }));
                                    return;
                                }
                                buf.truncate(n);
                                if n > 0 && full_tx.send(Ok(buf)).is_err() {
                                    return;
                                }
                                return; // EOF of an unsized stream
                            }
                            if full_tx.send(Ok(buf)).is_err() {
                                return;
                            }
                        }
                    }
                }
                // A sized source must end where it said it would.
                if let Some(announced) = len {
                    let mut probe = [0u8; 1];
                    let extra = loop {
                        match reader.read(&mut probe) {
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            other => break other,
                        }
                    };
                    match extra {
                        Ok(0) => {}
                        Ok(_) => {
                            let _ = full_tx.send(Err(VramError::LengthMismatch {
                                announced,
                                read: announced.saturating_add(1),
                            }));
                        }
                        Err(e) => {
                            let _ = full_tx.send(Err(VramError::Io { kind: e.kind() }));
                        }
                    }
                }
            });
        if let Err(e) = reader_thread {
            return Err(VramError::Io { kind: e.kind() });
        }
        let mut offset = 0u64;
        let mut result = Ok(());
        for msg in full_rx.iter() {
            let step = msg.and_then(|chunk| {
                consume(offset, &chunk)?;
                offset = offset.saturating_add(chunk.len() as u64);
                // The reader may have finished; a closed channel is fine.
                let _ = empty_tx.send(chunk);
                Ok(())
            });
            if let Err(e) = step {
                result = Err(e);
                break;
            }
        }
        // Dropping our ends unblocks the reader thread after an error.
        drop(full_rx);
        drop(empty_tx);
        result?;
        match len {
            Some(announced) if offset != announced => Err(VramError::LengthMismatch {
                announced,
                read: offset,
            }),
            _ => Ok(offset),
        }
    })
}

/// Reads until `buf` is full or EOF; returns bytes read.
fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> Result<usize, VramError> {
    let mut filled = 0usize;
    while let Some(rest) = buf.get_mut(filled..) {
        if rest.is_empty() {
            break;
        }
        match reader.read(rest) {
            Ok(0) => break,
            Ok(n) => filled = filled.saturating_add(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(VramError::Io { kind: e.kind() }),
        }
    }
    Ok(filled)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    fn read_all(data: &[u8], threads: usize, read: usize) -> Vec<u8> {
        let mut source = ParallelSlice::new(data, threads);
        let mut out = Vec::new();
        let mut buf = vec![0u8; read];
        loop {
            let n = source.read(&mut buf).unwrap();
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_parallel_file_reads_exactly_its_first_bytes_in_any_read_sizes() {
        use std::io::Write;
        let data: Vec<u8> = (0..(9 << 20) + 3)
            .map(|i| (i * 7 + i / 65_537) as u8)
            .collect();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&data).unwrap();
        for threads in [1, 2, 3, 8] {
            for read in [4095usize, 4 << 20, (5 << 20) + 1, 64 << 20] {
                for end in [data.len(), data.len() - 1_000_000] {
                    let mut source = ParallelFile {
                        file: &file,
                        offset: 0,
                        end: end as u64,
                        threads,
                    };
                    let mut out = Vec::new();
                    let mut buf = vec![0u8; read];
                    loop {
                        let n = source.read(&mut buf).unwrap();
                        if n == 0 {
                            break;
                        }
                        out.extend_from_slice(&buf[..n]);
                    }
                    assert!(
                        out == data[..end],
                        "threads {threads} read {read} end {end}"
                    );
                }
            }
        }
        // A file shorter than announced is an error, not a short read.
        let mut source = ParallelFile {
            file: &file,
            offset: 0,
            end: data.len() as u64 + 10,
            threads: 3,
        };
        let mut buf = vec![0u8; 16 << 20];
        let e = source.read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_parallel_slice_reads_exactly_the_slice_in_any_read_sizes() {
        let data: Vec<u8> = (0..(13 << 20) + 7)
            .map(|i| (i * 31 + i / 4099) as u8)
            .collect();
        for threads in [1, 2, 3, 8] {
            for read in [4095usize, 4 << 20, (5 << 20) + 1, 64 << 20] {
                assert!(
                    read_all(&data, threads, read) == data,
                    "threads {threads} read {read}"
                );
            }
            assert_eq!(read_all(&data[..1000], threads, 1), &data[..1000]);
            assert!(read_all(&[], threads, 4096).is_empty());
        }
    }
}
