//! One seal's data path, as orchestration only: which source goes to the
//! device by which route, and where its leaves are hashed. The pieces are a
//! floor below: the sources (`vram_core::source`: parallel readers, the
//! bounded chunk stream, the one `read_full`), the one leaf scheduler
//! (`vram_crypto`: `hash_alongside`, `hash_in_place`, `leaf_hashes_from`),
//! and the device's own routes (`DeviceBuffer::stream_from`, `fill_in_place`,
//! `hash_leaves_on_device`).
//!
//! The route is chosen once, from what the device reports it can do
//! ([`vram_core::DeviceCapabilities`]) and what the configuration asks
//! ([`SealHashing`]): [`Route::choose`], into the [`SealJob`]. No method is
//! called to find out whether it works. [`fill`] is then one `match` over
//! the route and the source.
//!
//! Every route returns the same [`Hashed`]. The read-once invariant holds on
//! each: a piece of a file or reader is read once into host memory (a staging
//! buffer, or the mock's own memory) and both uploaded and hashed from there.

use crate::{SealHashing, VramError};
use std::io::Read;
use std::sync::{Mutex, PoisonError};
use vram_core::source::{stream_chunks, ParallelSlice};
use vram_core::{DeviceBuffer, DeviceCapabilities, DeviceError, StreamError};
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
    /// How the bytes reach the device and where their leaves are hashed.
    pub(crate) route: Route,
}

/// How a seal's bytes reach the device memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Upload {
    /// The device lends its (host-visible) memory and the source is read
    /// straight into it ([`DeviceBuffer::fill_in_place`], the mock): one
    /// copy, no staging. Preferred whenever offered.
    InPlace,
    /// The backend's own pipeline ([`DeviceBuffer::stream_from`], CUDA:
    /// pinned, double-buffered staging with asynchronous copies).
    Stream,
    /// Staging-sized [`DeviceBuffer::write_at`] calls, which every device has.
    Writes,
}

/// Where a seal's leaves are hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeafHashing {
    /// On the host's cores, from the source bytes.
    Host,
    /// On the device after the upload, with `cross_check` random leaves
    /// hashed on the host as well ([`SealHashing::OnDevice`]).
    OnDevice { cross_check: u32 },
}

/// A seal's route: chosen once per device, from its capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Route {
    pub(crate) upload: Upload,
    pub(crate) hashing: LeafHashing,
}

impl Route {
    /// The route for a device with `caps` under the configured `hashing`:
    /// in-place when the memory is lent, else the backend's pipeline, else
    /// plain writes; leaves on the device only when it was asked for and
    /// the device can ([`SealHashing::OnDevice`] on a device that cannot
    /// hashes on the host).
    pub(crate) fn choose(caps: DeviceCapabilities, hashing: SealHashing) -> Self {
        let upload = if caps.fill_in_place {
            Upload::InPlace
        } else if caps.stream_from {
            Upload::Stream
        } else {
            Upload::Writes
        };
        let hashing = match hashing {
            SealHashing::OnDevice { cross_check } if caps.hash_on_device => {
                LeafHashing::OnDevice { cross_check }
            }
            SealHashing::Host | SealHashing::OnDevice { .. } => LeafHashing::Host,
        };
        Self { upload, hashing }
    }
}

/// Where a seal's bytes come from, their length known.
pub(crate) enum Input<'a> {
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

/// Copies `input` into `buffer` from offset 0 and hashes it on the way, by
/// the job's route; a file's length is checked again afterwards.
pub(crate) fn fill(
    buffer: &mut dyn DeviceBuffer,
    job: &SealJob,
    input: Input<'_>,
) -> Result<Hashed, VramError> {
    let file = match &input {
        Input::File { file, len, .. } => Some((*file, *len)),
        Input::Slice(_) | Input::Reader { .. } => None,
    };
    let out = route(buffer, job, input);
    match file {
        Some((file, len)) => same_length(file, len, out),
        None => out,
    }
}

/// The one choice of code path: the job's route and the source.
fn route(
    buffer: &mut dyn DeviceBuffer,
    job: &SealJob,
    input: Input<'_>,
) -> Result<Hashed, VramError> {
    let Route { upload, hashing } = job.route;
    match (hashing, upload, input) {
        (LeafHashing::OnDevice { cross_check }, _, Input::Slice(bytes)) => {
            slice_on_device(buffer, job, bytes, cross_check)
        }
        // A plain SHA-256 needs the file as one ordered stream: hashed on
        // the host, below.
        #[cfg(unix)]
        (
            LeafHashing::OnDevice { cross_check },
            _,
            Input::File {
                file,
                len,
                progress,
            },
        ) if !job.want_plain => file_on_device(buffer, job, file, len, progress, cross_check),
        (_, Upload::InPlace, Input::Slice(bytes)) => slice_in_place(buffer, job, bytes),
        (_, Upload::Stream | Upload::Writes, Input::Slice(bytes)) => {
            slice_alongside(buffer, job, bytes)
        }
        (_, Upload::Stream, Input::Reader { reader, len }) => {
            backend_stream(buffer, job, reader, len, true)
        }
        (_, Upload::InPlace, Input::Reader { reader, len }) if whole_leaves(job) > 0 => {
            in_place(buffer, job, len, |memory| {
                stream_in_place(job, reader, len, memory, whole_leaves(job))
            })
        }
        (_, Upload::InPlace | Upload::Writes, Input::Reader { reader, len }) => {
            reader_chunks(buffer, job, reader, len)
        }
        #[cfg(unix)]
        (
            _,
            upload,
            Input::File {
                file,
                len,
                progress,
            },
        ) => file_on_host(buffer, job, upload, file, len, progress),
        #[cfg(not(unix))]
        (
            _,
            _,
            Input::File {
                file,
                len,
                progress,
            },
        ) => {
            use std::io::{Seek, SeekFrom};
            let mut stream = file;
            stream
                .seek(SeekFrom::Start(0))
                .map_err(|e| VramError::Io { kind: e.kind() })?;
            let mut reader = Reported {
                inner: stream,
                progress,
            };
            let reader: &mut (dyn Read + Send) = &mut reader;
            route(buffer, job, Input::Reader { reader, len })
        }
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

/// Runs the backend's own streaming pipeline (CUDA: pinned, double-buffered
/// staging with asynchronous copies), feeding each chunk to a tree hasher
/// while its copy is in flight when `hash` is set.
fn backend_stream(
    buffer: &mut dyn DeviceBuffer,
    job: &SealJob,
    reader: &mut dyn Read,
    len: u64,
    hash: bool,
) -> Result<Hashed, VramError> {
    let mut hasher = TreeHasher::new(job.leaf);
    if job.want_plain {
        hasher = hasher.with_plain_sha256();
    }
    let mut update = |chunk: &[u8]| {
        if hash {
            hasher.update(chunk);
        }
    };
    match buffer.stream_from(reader, job.staging.max(1), &mut update) {
        Ok(n) if n == len => Ok(hasher.finish().into()),
        Ok(n) => Err(VramError::LengthMismatch {
            announced: len,
            read: n,
        }),
        Err(e) => Err(stream_err(job.device, len, e)),
    }
}

/// Seals from a host slice into memory the device lends (the mock): every
/// core copies pieces into it and hashes each while it is in cache, and the
/// plain SHA-256, when asked for, has this thread to itself.
fn slice_in_place(
    buffer: &mut dyn DeviceBuffer,
    job: &SealJob,
    bytes: &[u8],
) -> Result<Hashed, VramError> {
    let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    in_place(buffer, job, len, |memory| {
        let copy = |offset: u64, dst: &mut [u8]| {
            let start = usize::try_from(offset).unwrap_or(usize::MAX);
            let src =
                bytes
                    .get(start..start.saturating_add(dst.len()))
                    .ok_or(VramError::Internal {
                        reason: "an in-place piece lies outside the source",
                    })?;
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
    })
}

/// Seals from a host slice into memory the host cannot see: the upload (the
/// backend's pipeline, or writes) runs on this thread while the other cores
/// hash the leaves straight from `bytes`, and the plain SHA-256, when asked
/// for, on a thread of its own.
fn slice_alongside(
    buffer: &mut dyn DeviceBuffer,
    job: &SealJob,
    bytes: &[u8],
) -> Result<Hashed, VramError> {
    let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    let mut plain = None;
    let task = job
        .want_plain
        .then_some(|| plain = Some(vram_crypto::sha256(bytes)));
    let leaves = beside(task, || {
        hash_alongside(job.leaf, bytes, || {
            upload(
                buffer,
                job,
                &mut ParallelSlice::new(bytes, copy_threads()),
                len,
            )
        })
    })?;
    Ok(Hashed { leaves, plain })
}

/// Seals from a host slice hashed on the device: every core fills the
/// upload, then the device hashes the leaves ([`hash_on_device`]); the
/// plain SHA-256, when asked for, on a thread of its own meanwhile.
fn slice_on_device(
    buffer: &mut dyn DeviceBuffer,
    job: &SealJob,
    bytes: &[u8],
    cross_check: u32,
) -> Result<Hashed, VramError> {
    let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    let mut plain = None;
    let task = job
        .want_plain
        .then_some(|| plain = Some(vram_crypto::sha256(bytes)));
    let leaves = beside(task, || {
        upload(
            buffer,
            job,
            &mut ParallelSlice::new(bytes, hashing_threads()),
            len,
        )?;
        hash_on_device(buffer, job, len, cross_check, &HostSource::Slice(bytes))
    })?;
    Ok(Hashed { leaves, plain })
}

/// Runs `work` on the buffer's own memory, which the backend lends
/// ([`Upload::InPlace`]): `work` writes every byte and returns what it
/// hashed. When `work` fails, the buffer reads as never written.
fn in_place<T>(
    buffer: &mut dyn DeviceBuffer,
    job: &SealJob,
    len: u64,
    work: impl FnOnce(&mut [u8]) -> Result<T, VramError>,
) -> Result<T, VramError> {
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
    });
    match (lent, outcome) {
        (Ok(()), Some(Ok(t))) => Ok(t),
        (_, Some(Err(e))) => Err(e),
        (Err(e), _) => Err(stream_err(job.device, len, e)),
        (Ok(()), None) => Err(VramError::Internal {
            reason: "a backend lent its memory without calling the fill",
        }),
    }
}

/// Uploads exactly `len` bytes of `reader` from offset 0 by the job's
/// upload route, hashing nothing: read straight into lent memory, through
/// the backend's pipeline, or in `staging`-sized writes.
///
/// (On the H200 host measured in the README, filling pinned staging from
/// every core, about 15 GB/s, beat registering the caller's pages for a
/// direct DMA, 10-12 GB/s including the registration.)
fn upload(
    buffer: &mut dyn DeviceBuffer,
    job: &SealJob,
    reader: &mut (dyn Read + Send),
    len: u64,
) -> Result<(), VramError> {
    match job.route.upload {
        Upload::InPlace => in_place(buffer, job, len, |memory| {
            let want = usize::try_from(len).unwrap_or(usize::MAX);
            let memory = memory.get_mut(..want).ok_or(VramError::Internal {
                reason: "the lent memory is shorter than the seal",
            })?;
            let n = vram_core::source::read_full(reader, memory)
                .map_err(|e| VramError::Io { kind: e.kind() })?;
            if n < want {
                return Err(VramError::LengthMismatch {
                    announced: len,
                    read: n as u64,
                });
            }
            let mut probe = [0u8; 1];
            match vram_core::source::read_full(reader, &mut probe) {
                Ok(0) => Ok(()),
                Ok(_) => Err(VramError::LengthMismatch {
                    announced: len,
                    read: len.saturating_add(1),
                }),
                Err(e) => Err(VramError::Io { kind: e.kind() }),
            }
        }),
        Upload::Stream => backend_stream(buffer, job, reader, len, false).map(|_| ()),
        Upload::Writes => stream_chunks(reader, Some(len), job.staging, |offset, chunk| {
            write_chunks(buffer, job, offset, chunk).map_err(Step)
        })
        .map(|_| ())
        .map_err(|Step(e)| e),
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
/// fails the seal. Runs only on a route chosen for a device that reports
/// it can hash.
fn hash_on_device(
    buffer: &dyn DeviceBuffer,
    job: &SealJob,
    len: u64,
    cross_check: u32,
    source: &HostSource<'_>,
) -> Result<Vec<Sha256Digest>, VramError> {
    let tree = TreeDescriptor::new(job.leaf, len);
    let count = tree.leaf_count();
    let raw = buffer
        .hash_leaves_on_device(LEAF_PREFIX, job.leaf.bytes(), 0, count)
        .map_err(|e| device_err(job.device, e))?;
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
    Ok(leaves)
}

/// Staging chunks of whole leaves (0 when the staging buffer is smaller
/// than a leaf).
fn whole_leaves(job: &SealJob) -> usize {
    let leaf_bytes = usize::try_from(job.leaf.bytes()).unwrap_or(usize::MAX);
    job.staging
        .checked_div(leaf_bytes)
        .unwrap_or(0)
        .saturating_mul(leaf_bytes)
}

/// Seals exactly `len` bytes from `reader` with `write_at`: each staging
/// chunk is a whole number of leaves, read once, then copied and hashed
/// like a slice on every core, with the plain SHA-256 (when asked for) fed
/// the same chunk on a thread of its own. A staging buffer smaller than a
/// leaf streams through a tree hasher instead.
fn reader_chunks(
    buffer: &mut dyn DeviceBuffer,
    job: &SealJob,
    reader: &mut (dyn Read + Send),
    len: u64,
) -> Result<Hashed, VramError> {
    let whole_leaves = whole_leaves(job);
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

/// `out`, unless the file changed length while it was read. A file cut
/// short shows first as a short positional read (UnexpectedEof): that is
/// the same event as a file that grew, and is reported the same way.
fn same_length(
    file: &std::fs::File,
    len: u64,
    out: Result<Hashed, VramError>,
) -> Result<Hashed, VramError> {
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

/// Seals the first `len` bytes of a regular file hashed on the device:
/// every core fills the upload with positional reads, the device hashes it
/// ([`hash_on_device`]), random leaves are cross-checked from the file.
#[cfg(unix)]
fn file_on_device(
    buffer: &mut dyn DeviceBuffer,
    job: &SealJob,
    file: &std::fs::File,
    len: u64,
    progress: &(dyn Fn(u64) + Sync),
    cross_check: u32,
) -> Result<Hashed, VramError> {
    let mut reader = Reported {
        inner: vram_core::source::ParallelFile::new(file, len, hashing_threads()),
        progress,
    };
    upload(buffer, job, &mut reader, len)?;
    let leaves = hash_on_device(buffer, job, len, cross_check, &HostSource::File(file))?;
    Ok(Hashed {
        leaves,
        plain: None,
    })
}

/// Seals the first `len` bytes of a regular file hashed on the host.
///
/// A seal that also computes the plain SHA-256 (one ordered stream) reads
/// the file in order, each staging chunk filled by several threads'
/// positional reads (`vram_core::source::ParallelFile`; the file's cursor
/// is not used), as a reader by the same upload. Otherwise: into lent
/// memory (the mock), every core reads pieces of the file straight into
/// the memory they will occupy and hashes them there
/// ([`vram_crypto::hash_in_place`]): one copy, no staging; through a
/// backend's pipeline, each chunk hashed while its copy is in flight; with
/// writes, every core reads its pieces, writes them (the writes are
/// serialized) and hashes them.
#[cfg(unix)]
fn file_on_host(
    buffer: &mut dyn DeviceBuffer,
    job: &SealJob,
    upload: Upload,
    file: &std::fs::File,
    len: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Hashed, VramError> {
    use std::os::unix::fs::FileExt;
    use vram_core::source::ParallelFile;
    let io = |e: std::io::Error| VramError::Io { kind: e.kind() };
    let mut reader = Reported {
        inner: ParallelFile::new(file, len, copy_threads()),
        progress,
    };
    if job.want_plain {
        let reader: &mut (dyn Read + Send) = &mut reader;
        return route(buffer, job, Input::Reader { reader, len });
    }
    match upload {
        Upload::Stream => backend_stream(buffer, job, &mut reader, len, true),
        Upload::InPlace => {
            let leaves = in_place(buffer, job, len, |memory| {
                vram_crypto::hash_in_place(job.leaf, memory, |offset, dst: &mut [u8]| {
                    file.read_exact_at(dst, offset).map_err(io)?;
                    progress(dst.len() as u64);
                    Ok(())
                })
            })?;
            Ok(Hashed {
                leaves,
                plain: None,
            })
        }
        Upload::Writes => {
            let buffer = Mutex::new(buffer);
            let leaves =
                vram_crypto::leaf_hashes_from(job.leaf, len, job.staging, |offset, buf| {
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
    }
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

#[cfg(test)]
mod tests {
    use super::{LeafHashing, Route, Upload};
    use crate::SealHashing;
    use vram_core::DeviceCapabilities;

    /// Every combination of abilities gets one route: memory lent in place
    /// first, then the backend's pipeline, then writes; leaves hashed on the
    /// device only when asked for and offered.
    #[test]
    fn the_route_follows_the_capabilities_alone() {
        for bits in 0u8..8 {
            let caps = DeviceCapabilities {
                stream_from: bits & 1 != 0,
                fill_in_place: bits & 2 != 0,
                hash_on_device: bits & 4 != 0,
            };
            let upload = if caps.fill_in_place {
                Upload::InPlace
            } else if caps.stream_from {
                Upload::Stream
            } else {
                Upload::Writes
            };
            let host = Route::choose(caps, SealHashing::Host);
            assert_eq!(
                host,
                Route {
                    upload,
                    hashing: LeafHashing::Host
                },
                "{caps:?}"
            );
            let on_device = Route::choose(caps, SealHashing::OnDevice { cross_check: 7 });
            let hashing = if caps.hash_on_device {
                LeafHashing::OnDevice { cross_check: 7 }
            } else {
                LeafHashing::Host
            };
            assert_eq!(on_device, Route { upload, hashing }, "{caps:?}");
        }
    }
}
