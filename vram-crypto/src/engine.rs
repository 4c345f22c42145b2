//! The leaf-hashing engine: multi-buffer SHA-256 (tape-sha256) across SIMD
//! lanes, contiguous leaf ranges across all cores, guarded by a power-on
//! known-answer test against ring.
//!
//! Threads come from `std::thread::scope`, not a pool such as rayon: the work
//! is perfectly regular (equal-sized leaves, one contiguous range per core), so
//! work stealing buys nothing, and the crate keeps one dependency fewer. A
//! scope costs a few tens of microseconds per call, so inputs under
//! [`PARALLEL_MIN_BYTES`] are hashed on the calling thread.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use crate::digest::Sha256Digest;
use crate::tree::{LeafHashes, LeafSize, TreeDescriptor, TreeDigest, LEAF_PREFIX};
use crate::CryptoError;

/// Below this many bytes a call is hashed on the calling thread only.
const PARALLEL_MIN_BYTES: usize = 524_288; // 512 KiB

/// Number of threads leaf hashing uses: `std::thread::available_parallelism`.
#[must_use]
pub fn hashing_threads() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// Which implementation hashes leaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Engine {
    /// tape-sha256 multi-buffer, after its self-test passed.
    Tape,
    /// ring, one message at a time: the reference.
    Ring,
}

fn engine() -> Engine {
    if self_test().is_ok() {
        Engine::Tape
    } else {
        Engine::Ring
    }
}

/// Name of the backend that hashes leaves, e.g. `"tape-sha256/shani-x4"`, or
/// `"ring"` when the multi-buffer backend failed its self-test.
#[must_use]
pub fn backend() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| match engine() {
        Engine::Tape => format!("tape-sha256/{}", tape_sha256::backend()),
        Engine::Ring => "ring".to_owned(),
    })
    .as_str()
}

/// Number of leaves the active backend hashes at once per core.
#[must_use]
pub fn lane_width() -> usize {
    match engine() {
        Engine::Tape => tape_sha256::lane_width().max(1),
        Engine::Ring => 1,
    }
}

/// Power-on known-answer test of the multi-buffer backend against ring.
///
/// Runs once per process (the result is cached) before the first leaf is
/// hashed. It hashes fixed inputs of lengths 0, 1, 55, 56, 63, 64, 65, 119,
/// 120, 127, 128, 129, 4095, 4096, 4097 and 65537 bytes, alone, in uniform
/// batches and in mixed-length batches wider than the lane count, with and
/// without [`LEAF_PREFIX`], and compares every digest with ring's.
///
/// On a mismatch the failure is logged with `tracing::error!` and every
/// hashing function of this crate uses ring instead ("fail-safe to the
/// reference"): digests stay correct, only slower. A wrong SIMD result can
/// therefore never become a digest. The hashing functions stay infallible
/// because the reference is always available; callers that want to refuse to
/// run on a degraded machine check this function or [`backend`].
///
/// # Errors
///
/// [`CryptoError::SelfTestFailed`] naming the tape-sha256 backend that
/// disagreed with ring.
pub fn self_test() -> Result<(), CryptoError> {
    static RESULT: OnceLock<Result<(), CryptoError>> = OnceLock::new();
    RESULT
        .get_or_init(|| {
            let backend = tape_sha256::backend();
            if known_answers_match(tape_sha256::hash_many_prefixed) {
                tracing::debug!(backend, "SHA-256 multi-buffer self-test passed");
                Ok(())
            } else {
                tracing::error!(
                    backend,
                    "SHA-256 multi-buffer self-test FAILED; hashing with ring instead"
                );
                Err(CryptoError::SelfTestFailed { backend })
            }
        })
        .clone()
}

/// Deterministic test input: byte i = (i * 31 + seed) mod 256.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut b = seed;
    (0..len)
        .map(|_| {
            let v = b;
            b = b.wrapping_add(31);
            v
        })
        .collect()
}

fn ring_prefixed(prefix: &[u8], body: &[u8]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(prefix);
    ctx.update(body);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// A multi-buffer hasher under test: `prefix || body` for each body.
type BatchHasher = fn(&[u8], &[&[u8]], &mut [[u8; 32]]);

fn batch_matches(hash: BatchHasher, prefix: &[u8], bodies: &[&[u8]]) -> bool {
    let mut out = vec![[0u8; 32]; bodies.len()];
    hash(prefix, bodies, &mut out);
    bodies
        .iter()
        .zip(&out)
        .all(|(b, o)| ring_prefixed(prefix, b) == *o)
}

/// Whether `hash` agrees with ring on every known-answer input (see
/// [`self_test`]); the self-test passes tape-sha256's hasher.
fn known_answers_match(hash: BatchHasher) -> bool {
    const LENS: [usize; 16] = [
        0, 1, 55, 56, 63, 64, 65, 119, 120, 127, 128, 129, 4095, 4096, 4097, 65537,
    ];
    let inputs: Vec<Vec<u8>> = LENS
        .iter()
        .zip(0u8..)
        .map(|(&len, seed)| pattern(len, seed))
        .collect();
    let all: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    let lanes = tape_sha256::lane_width().max(1);
    let mut ok = true;
    for prefix in [&[][..], LEAF_PREFIX] {
        // Each alone, all together (mixed lengths, wider than the lanes),
        // and a full uniform batch of each length.
        ok &= all.iter().all(|b| batch_matches(hash, prefix, &[b]));
        ok &= batch_matches(hash, prefix, &all);
        for input in &inputs {
            let uniform: Vec<Vec<u8>> = (0..lanes.saturating_add(1))
                .zip(0u8..)
                .map(|(_, s)| pattern(input.len(), s))
                .collect();
            let refs: Vec<&[u8]> = uniform.iter().map(Vec::as_slice).collect();
            ok &= batch_matches(hash, prefix, &refs);
        }
    }
    ok
}

/// Hashes `LEAF_PREFIX || body` for each body on the calling thread.
fn hash_serial(engine: Engine, bodies: &[&[u8]], out: &mut [[u8; 32]]) {
    match engine {
        Engine::Tape => tape_sha256::hash_many_prefixed(LEAF_PREFIX, bodies, out),
        Engine::Ring => {
            for (b, o) in bodies.iter().zip(out.iter_mut()) {
                *o = ring_prefixed(LEAF_PREFIX, b);
            }
        }
    }
}

/// The leaf hashes of one piece's bodies, on the calling thread.
fn hash_piece(engine: Engine, bodies: &[&[u8]]) -> Vec<Sha256Digest> {
    let mut raw = vec![[0u8; 32]; bodies.len()];
    hash_serial(engine, bodies, &mut raw);
    raw.into_iter().map(Sha256Digest).collect()
}

/// A job the calling thread runs beside the hashing (a copy, a plain stream).
type Side<'a, E> = Box<dyn FnOnce() -> Result<(), E> + Send + 'a>;

/// Writes the bytes at an offset into a piece of memory.
type Fill<'a, E> = dyn Fn(u64, &mut [u8]) -> Result<(), E> + Sync + 'a;

/// The work on one piece, given its index and the thread's scratch buffer.
type PieceWork<'a, T, E> = dyn Fn(usize, &mut Vec<u8>) -> Result<T, E> + Sync + 'a;

/// Runs `work(piece, scratch)` for every piece `0..pieces` on up to
/// `threads` threads (the caller's included) and returns the results in piece
/// order: the one leaf scheduler of the workspace.
///
/// Pieces are handed out one at a time from a shared counter, so the threads
/// finish together whatever each piece costs (a copy beside the hashing, a
/// slow read, a busy core), and a helper the OS will not start costs speed,
/// never a piece. When `side` is given, the calling thread runs it first (the
/// copy of a seal, or a plain SHA-256 stream) while the helpers work, and
/// joins them when it is done. The first error, of `side` or of a piece,
/// stops the handing out and is returned. `scratch` is one buffer per thread,
/// kept across that thread's pieces (for reads).
fn schedule<T, E>(
    pieces: usize,
    threads: usize,
    side: Option<Side<'_, E>>,
    work: &PieceWork<'_, T, E>,
) -> Result<Vec<T>, E>
where
    T: Send,
    E: Send,
{
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let failed: Mutex<Option<E>> = Mutex::new(None);
    let fail = |e: E| {
        stop.store(true, Ordering::Relaxed);
        failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(e);
    };
    let worker = || {
        let mut scratch = Vec::new();
        let mut done: Vec<(usize, T)> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= pieces {
                break;
            }
            match work(i, &mut scratch) {
                Ok(t) => done.push((i, t)),
                Err(e) => {
                    fail(e);
                    break;
                }
            }
        }
        done
    };
    let helpers = helper_threads(pieces, threads, side.is_some());
    let mut parts = std::thread::scope(|s| {
        let handles: Vec<_> = (0..helpers)
            .map_while(|_| {
                std::thread::Builder::new()
                    .name("vram-hash".into())
                    .spawn_scoped(s, worker)
                    .ok()
            })
            .collect();
        if handles.len() < helpers {
            tracing::debug!(
                started = handles.len(),
                wanted = helpers,
                "could not start every hashing thread; the others take its pieces"
            );
        }
        if let Some(side) = side {
            if let Err(e) = side() {
                fail(e);
            }
        }
        let mut parts = worker();
        for h in handles {
            match h.join() {
                Ok(done) => parts.extend(done),
                // A panic in `work` (a caller's read callback) reaches the
                // caller unchanged, as on a scoped thread.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        parts
    });
    if let Some(e) = failed.into_inner().unwrap_or_else(PoisonError::into_inner) {
        return Err(e);
    }
    parts.sort_unstable_by_key(|(i, _)| *i);
    Ok(parts.into_iter().map(|(_, t)| t).collect())
}

/// The helper threads [`schedule`] starts beside the calling thread for
/// `pieces` pieces on up to `threads` threads. With a side job the caller is
/// busy with it first, so at least one helper starts (one per piece at most).
/// Without one the caller takes pieces itself, so a helper is started only
/// for a piece the caller would otherwise wait for: none for a single piece
/// (a sampled verification of one leaf), where a helper could only race the
/// caller for it and would cost a thread start per call.
fn helper_threads(pieces: usize, threads: usize, side: bool) -> usize {
    let others = threads.max(1).saturating_sub(1);
    if side {
        others.max(1).min(pieces)
    } else {
        others.min(pieces.saturating_sub(1))
    }
}

/// Hashes `LEAF_PREFIX || body` for each body (anywhere in memory) on up to
/// `max_threads` threads, in batches of the backend's lane width handed out
/// by [`schedule`], with `side` on the calling thread first when given.
fn hash_bodies_alongside<E: Send>(
    bodies: &[&[u8]],
    max_threads: usize,
    side: Option<Side<'_, E>>,
) -> Result<Vec<Sha256Digest>, E> {
    let engine = engine();
    let total: usize = bodies
        .iter()
        .map(|b| b.len())
        .fold(0, usize::saturating_add);
    let threads = if total < PARALLEL_MIN_BYTES {
        1
    } else {
        max_threads
    };
    let batch = lane_width().max(1);
    let batches: Vec<&[&[u8]]> = bodies.chunks(batch).collect();
    let parts = schedule(batches.len(), threads, side, &|i, _| {
        let batch = batches.get(i).copied().unwrap_or_default();
        Ok(hash_piece(engine, batch))
    })?;
    Ok(parts.into_iter().flatten().collect())
}

/// Hashes leaf bodies (anywhere in memory) and appends their hashes to `out`.
pub(crate) fn append_hashes(bodies: &[&[u8]], max_threads: usize, out: &mut Vec<Sha256Digest>) {
    match hash_bodies_alongside::<std::convert::Infallible>(bodies, max_threads, None) {
        Ok(hashes) => out.extend(hashes),
        Err(never) => match never {},
    }
}

/// [`append_hashes`] while `side` runs on the calling thread (a plain
/// SHA-256 stream beside the leaves).
pub(crate) fn append_hashes_alongside(
    bodies: &[&[u8]],
    max_threads: usize,
    side: impl FnOnce() + Send,
    out: &mut Vec<Sha256Digest>,
) {
    let side = Box::new(move || {
        side();
        Ok::<(), std::convert::Infallible>(())
    });
    match hash_bodies_alongside(bodies, max_threads, Some(side)) {
        Ok(hashes) => out.extend(hashes),
        Err(never) => match never {},
    }
}

/// Hashes a contiguous run of leaves and appends their hashes to `out`.
///
/// `data` must start at a leaf boundary; it is cut into `leaf`-sized leaves,
/// the last of which may be shorter. Runs on all cores and all SIMD lanes.
/// Verify loops call this on each chunk read back from device memory, and
/// sampled verification on single leaves.
pub fn hash_leaf_run(leaf: LeafSize, data: &[u8], out: &mut Vec<Sha256Digest>) {
    hash_leaf_run_threads(leaf, data, hashing_threads(), out);
}

/// [`hash_leaf_run`] on at most `max_threads` threads (1: the calling thread
/// only, still across all SIMD lanes), for callers that spread their own work
/// over the cores, e.g. one device read-back stream per core.
pub fn hash_leaf_run_threads(
    leaf: LeafSize,
    data: &[u8],
    max_threads: usize,
    out: &mut Vec<Sha256Digest>,
) {
    let bodies: Vec<&[u8]> = data.chunks(leaf.bytes_usize()).collect();
    append_hashes(&bodies, max_threads, out);
}

/// Copies and hashes at once: `copy` runs on the calling thread (an upload
/// of `data` to a device) while every other core hashes the leaves of
/// `data`; when the copy is done the calling thread hashes too. Leaves are
/// handed out in batches of the backend's lane width, so the cores finish
/// together whatever a copy costs relative to a hash on this machine, and
/// every batch fills all SIMD lanes.
///
/// `data` starts at a leaf boundary. Returns its leaf hashes in order.
///
/// # Errors
/// The error of `copy`; the hashing then stops early.
pub fn hash_alongside<E: Send>(
    leaf: LeafSize,
    data: &[u8],
    copy: impl FnOnce() -> Result<(), E> + Send,
) -> Result<Vec<Sha256Digest>, E> {
    let bodies: Vec<&[u8]> = data.chunks(leaf.bytes_usize()).collect();
    // A copy always gets a thread of its own beside the hashing, however
    // small the data ([`schedule`] starts a helper whenever there is a side).
    hash_bodies_alongside(&bodies, hashing_threads(), Some(Box::new(copy)))
}

/// Runs `work` on the calling thread while `task` (when given) runs on a
/// thread of its own: a plain SHA-256 stream beside a copy and its leaf
/// hashing, where the engine's pieces are not the right shape (a backend's
/// own upload pipeline, a tree hasher fed chunk by chunk). When the OS will
/// not start the thread, `task` runs here afterwards, so a refused thread
/// costs speed, never a missing hash. A panic in `task` reaches the caller.
///
/// # Errors
/// The error of `work` (`task` has run all the same).
pub fn beside<T, E>(
    task: Option<impl FnOnce() + Send>,
    work: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    let Some(task) = task else {
        return work();
    };
    let task = Mutex::new(Some(task));
    let take = || task.lock().unwrap_or_else(PoisonError::into_inner).take();
    let result = std::thread::scope(|s| {
        let side = std::thread::Builder::new()
            .name("vram-hash-beside".into())
            .spawn_scoped(s, || {
                if let Some(t) = take() {
                    t();
                }
            });
        let result = work();
        if let Ok(handle) = side {
            if let Err(panic) = handle.join() {
                std::panic::resume_unwind(panic);
            }
        }
        result
    });
    if let Some(t) = take() {
        t();
    }
    result
}

/// Bytes a thread reads (or fills in place) and then hashes at once, while
/// they are still in its cache: one batch of leaves across the SIMD lanes,
/// at least this much.
const READ_PIECE: usize = 4_194_304; // 4 MiB

/// Leaves per piece of a read-then-hash job: whole lane batches of leaves
/// of at least [`READ_PIECE`] bytes, within `budget` bytes per thread (at
/// least one leaf).
fn leaves_per_piece(leaf: LeafSize, budget_per_thread: usize) -> u64 {
    let leaf_bytes = leaf.bytes_usize().max(1);
    let lanes = lane_width().max(1);
    let batch = leaf_bytes.saturating_mul(lanes);
    let want = READ_PIECE.div_ceil(batch).max(1).saturating_mul(batch);
    let bytes = want.min(budget_per_thread.max(1));
    u64::try_from(bytes.checked_div(leaf_bytes).unwrap_or(1).max(1)).unwrap_or(1)
}

/// Every leaf hash of the `len` bytes behind `read`, on all cores:
/// `read(offset, buf)` fills `buf` with the bytes at `offset` (a file's
/// positional reads, a device's read-back). Each thread reads a piece of
/// whole leaves into its own buffer and hashes it while it is in cache;
/// pieces are handed out from one counter, so reads and hashing of different
/// threads overlap. `budget` is the host memory for all threads together:
/// no thread reads more than `budget / threads` bytes at once, so memory does
/// not grow with the cores. A leaf larger than a thread's share is hashed as
/// a stream of reads of that size.
///
/// # Errors
/// The first error `read` returns.
pub fn leaf_hashes_from<E, F>(
    leaf: LeafSize,
    len: u64,
    budget: usize,
    read: F,
) -> Result<LeafHashes, E>
where
    E: Send,
    F: Fn(u64, &mut [u8]) -> Result<(), E> + Sync,
{
    let descriptor = TreeDescriptor::new(leaf, len);
    let count = descriptor.leaf_count();
    let threads = hashing_threads().max(1);
    let share = budget.checked_div(threads).unwrap_or(budget).max(1);
    let per_piece = leaves_per_piece(leaf, share);
    let pieces = usize::try_from(count.div_ceil(per_piece)).unwrap_or(usize::MAX);
    let engine = engine();
    let parts = schedule(pieces, threads, None, &|i, buf| {
        let first = u64::try_from(i)
            .unwrap_or(u64::MAX)
            .saturating_mul(per_piece);
        let stop = first.saturating_add(per_piece).min(count);
        let from = descriptor.leaf_range(first).map_or(len, |r| r.start);
        let to = descriptor
            .leaf_range(stop.saturating_sub(1))
            .map_or(len, |r| r.end);
        let n = usize::try_from(to.saturating_sub(from)).unwrap_or(usize::MAX);
        if n <= share {
            buf.resize(n, 0);
            read(from, buf)?;
            let bodies: Vec<&[u8]> = buf.chunks(leaf.bytes_usize()).collect();
            Ok(hash_piece(engine, &bodies))
        } else {
            Ok(vec![leaf_hash_from(from..to, share, buf, &read)?])
        }
    })?;
    let hashes: Vec<Sha256Digest> = parts.into_iter().flatten().collect();
    Ok(LeafHashes::from_parts_unchecked(descriptor, hashes))
}

/// Fills `dst` in place and hashes it: every thread takes a piece of whole
/// leaves of `dst`, calls `fill(offset, piece)` to write it (a file read
/// straight into the memory it will occupy), and hashes the piece right
/// after, while it is in cache. One copy, no staging buffer. Returns the
/// leaf hashes of `dst` in order.
///
/// # Errors
/// The first error `fill` returns (the contents of `dst` are then
/// unspecified).
pub fn hash_in_place<E, F>(leaf: LeafSize, dst: &mut [u8], fill: F) -> Result<Vec<Sha256Digest>, E>
where
    E: Send,
    F: Fn(u64, &mut [u8]) -> Result<(), E> + Sync,
{
    in_place(leaf, dst, &fill, None)
}

/// [`hash_in_place`] while `side` (a plain SHA-256 stream over the source)
/// runs on the calling thread, which has a core of its own: the other
/// threads fill and hash, and the calling thread joins them when `side` is
/// done. With the plain stream slower than the leaves, this makes a seal that
/// computes both as fast as the stream alone.
///
/// # Errors
/// The first error of `fill` or `side`.
pub fn hash_in_place_alongside<E, F>(
    leaf: LeafSize,
    dst: &mut [u8],
    fill: F,
    side: impl FnOnce() -> Result<(), E> + Send,
) -> Result<Vec<Sha256Digest>, E>
where
    E: Send,
    F: Fn(u64, &mut [u8]) -> Result<(), E> + Sync,
{
    in_place(leaf, dst, &fill, Some(Box::new(side)))
}

fn in_place<E: Send>(
    leaf: LeafSize,
    dst: &mut [u8],
    fill: &Fill<'_, E>,
    side: Option<Side<'_, E>>,
) -> Result<Vec<Sha256Digest>, E> {
    let per_piece = usize::try_from(leaves_per_piece(leaf, usize::MAX)).unwrap_or(1);
    let piece_bytes = per_piece.saturating_mul(leaf.bytes_usize()).max(1);
    // Each piece is taken by exactly one thread: its own lock, never contended.
    let slots: Vec<Mutex<Option<&mut [u8]>>> = dst
        .chunks_mut(piece_bytes)
        .map(|p| Mutex::new(Some(p)))
        .collect();
    let engine = engine();
    let threads = if side.is_some() {
        hashing_threads().max(2)
    } else {
        hashing_threads()
    };
    let parts = schedule(slots.len(), threads, side, &|i, _| {
        let taken = slots
            .get(i)
            .and_then(|s| s.lock().unwrap_or_else(PoisonError::into_inner).take());
        let Some(piece) = taken else {
            return Ok(Vec::new());
        };
        let offset = u64::try_from(i.saturating_mul(piece_bytes)).unwrap_or(u64::MAX);
        fill(offset, piece)?;
        let bodies: Vec<&[u8]> = piece.chunks(leaf.bytes_usize()).collect();
        Ok(hash_piece(engine, &bodies))
    })?;
    Ok(parts.into_iter().flatten().collect())
}

/// The hash of the one leaf at `range` (SHA-256 over the leaf prefix and the
/// bytes), read through `read` in pieces of at most `chunk` bytes into `buf`.
///
/// # Errors
/// The first error `read` returns.
pub fn leaf_hash_from<E, F>(
    range: Range<u64>,
    chunk: usize,
    buf: &mut Vec<u8>,
    read: F,
) -> Result<Sha256Digest, E>
where
    F: Fn(u64, &mut [u8]) -> Result<(), E>,
{
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(LEAF_PREFIX);
    let mut offset = range.start;
    while offset < range.end {
        let n = usize::try_from(range.end.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(chunk.max(1));
        buf.resize(n, 0);
        read(offset, buf)?;
        ctx.update(buf);
        offset = offset.saturating_add(n as u64);
    }
    let mut digest = [0u8; 32];
    digest
        .iter_mut()
        .zip(ctx.finish().as_ref())
        .for_each(|(d, s)| *d = *s);
    Ok(Sha256Digest(digest))
}

/// Every leaf hash of `data` (all cores, all SIMD lanes).
#[must_use]
pub fn leaf_hashes(data: &[u8], leaf: LeafSize) -> LeafHashes {
    let descriptor = TreeDescriptor::new(leaf, u64::try_from(data.len()).unwrap_or(u64::MAX));
    let mut hashes = Vec::new();
    hash_leaf_run(leaf, data, &mut hashes);
    LeafHashes::from_parts_unchecked(descriptor, hashes)
}

/// The tree digest of `data` (all cores, all SIMD lanes).
#[must_use]
pub fn tree_digest(data: &[u8], leaf: LeafSize) -> TreeDigest {
    leaf_hashes(data, leaf).root()
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    /// A helper thread is started only for a piece the calling thread would
    /// not take itself: none for one piece (a sampled verification of one
    /// leaf), one fewer than the pieces otherwise, and at least one beside a
    /// side job (the caller is busy with it).
    #[test]
    fn helpers_only_for_pieces_the_caller_leaves() {
        for (pieces, threads, side, helpers) in [
            (0, 8, false, 0),
            (1, 2, false, 0),
            (1, 16, false, 0),
            (2, 2, false, 1),
            (3, 2, false, 1),
            (5, 4, false, 3),
            (100, 1, false, 0),
            (100, 0, false, 0),
            (0, 4, true, 0),
            (1, 2, true, 1),
            (1, 1, true, 1),
            (3, 8, true, 3),
            (100, 4, true, 3),
        ] {
            assert_eq!(
                helper_threads(pieces, threads, side),
                helpers,
                "{pieces} pieces, {threads} threads, side {side}"
            );
        }
    }

    /// The fallback used after a failed self-test gives the same hashes.
    #[test]
    fn ring_fallback_matches_multi_buffer() {
        let data: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
        let bodies: Vec<&[u8]> = data
            .chunks(4096)
            .chain([&data[..0], &data[..1], &data[..65]])
            .collect();
        let mut tape = vec![[0u8; 32]; bodies.len()];
        let mut ring = vec![[1u8; 32]; bodies.len()];
        hash_serial(Engine::Tape, &bodies, &mut tape);
        hash_serial(Engine::Ring, &bodies, &mut ring);
        assert_eq!(tape, ring);
        assert!(known_answers_match(tape_sha256::hash_many_prefixed));
    }

    /// Thread counts from 1 to more than there are bodies give the same result.
    #[test]
    fn any_thread_count_gives_the_same_hashes() {
        let data: Vec<u8> = (0..(PARALLEL_MIN_BYTES * 3 + 7))
            .map(|i| (i % 249) as u8)
            .collect();
        let bodies: Vec<&[u8]> = data.chunks(64 * 1024).collect();
        let mut want = vec![[0u8; 32]; bodies.len()];
        hash_serial(Engine::Ring, &bodies, &mut want);
        let want: Vec<Sha256Digest> = want.into_iter().map(Sha256Digest).collect();
        for threads in [0, 1, 2, 3, 7, 64] {
            let mut got = Vec::new();
            append_hashes(&bodies, threads, &mut got);
            assert_eq!(got, want, "{threads} threads");
            let mut side_ran = false;
            let mut got = Vec::new();
            append_hashes_alongside(&bodies, threads, || side_ran = true, &mut got);
            assert_eq!(got, want, "{threads} threads, alongside");
            assert!(side_ran);
        }
    }

    fn read_from(data: &[u8]) -> impl Fn(u64, &mut [u8]) -> Result<(), ()> + Sync + '_ {
        move |off, buf| {
            let off = off as usize;
            buf.copy_from_slice(&data[off..off + buf.len()]);
            Ok(())
        }
    }

    #[test]
    fn equals_the_in_memory_leaf_hashes_for_any_chunk_size() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let leaf = LeafSize::new(4096).unwrap();
        let expected = leaf_hashes(&data, leaf);
        for chunk in [1, 4095, 4096, 10_000, 1 << 20] {
            let got = leaf_hashes_from(leaf, data.len() as u64, chunk, read_from(&data)).unwrap();
            assert_eq!(got.hashes(), expected.hashes(), "chunk {chunk}");
            assert_eq!(got.root(), expected.root());
        }
        let empty = leaf_hashes_from(leaf, 0, 4096, read_from(&[])).unwrap();
        assert_eq!(empty.root(), tree_digest(&[], leaf));
    }

    #[test]
    fn the_chunk_is_a_budget_shared_by_all_threads() {
        let data: Vec<u8> = (0..2_000_000u32).map(|i| (i * 13 % 251) as u8).collect();
        let leaf = LeafSize::new(4096).unwrap();
        let chunk = 256 << 10;
        let share = chunk / hashing_threads();
        let largest = AtomicUsize::new(0);
        let got = leaf_hashes_from(leaf, data.len() as u64, chunk, |off, buf: &mut [u8]| {
            largest.fetch_max(buf.len(), Ordering::Relaxed);
            read_from(&data)(off, buf)
        })
        .unwrap();
        assert_eq!(got.root(), tree_digest(&data, leaf));
        let largest = largest.into_inner();
        assert!(
            largest <= share,
            "a thread read {largest} bytes at once, share {share}"
        );
    }

    #[test]
    fn read_errors_are_returned() {
        let leaf = LeafSize::new(4096).unwrap();
        let failing = |off: u64, _: &mut [u8]| if off >= 8192 { Err(off) } else { Ok(()) };
        assert_eq!(
            leaf_hashes_from(leaf, 100_000, 4096, failing).unwrap_err() % 4096,
            0
        );
    }

    #[test]
    fn a_fill_in_place_writes_and_hashes_every_piece() {
        let data: Vec<u8> = (0..(9 << 20) + 77u32)
            .map(|i| (i * 11 % 253) as u8)
            .collect();
        for leaf in [4096u64, 1 << 20, 16 << 20] {
            let leaf = LeafSize::new(leaf).unwrap();
            let mut dst = vec![0u8; data.len()];
            let hashes = hash_in_place(leaf, &mut dst, |off, piece: &mut [u8]| {
                let off = off as usize;
                piece.copy_from_slice(&data[off..off + piece.len()]);
                Ok::<(), ()>(())
            })
            .unwrap();
            assert!(dst == data);
            assert_eq!(hashes, leaf_hashes(&data, leaf).into_parts().1);
        }
        let mut dst = vec![0u8; 10 << 20];
        let leaf = LeafSize::new(4096).unwrap();
        let e = hash_in_place(
            leaf,
            &mut dst,
            |off, _: &mut [u8]| {
                if off > 0 {
                    Err(off)
                } else {
                    Ok(())
                }
            },
        );
        assert!(e.unwrap_err() > 0);
    }

    #[test]
    fn a_task_beside_runs_exactly_once_whatever_the_work_returns() {
        for fail in [false, true] {
            let mut ran = 0;
            let out = beside(Some(|| ran += 1), || if fail { Err(3) } else { Ok(5) });
            assert_eq!(out, if fail { Err(3) } else { Ok(5) });
            assert_eq!(ran, 1);
        }
        assert_eq!(beside(None::<fn()>, || Ok::<u8, ()>(9)), Ok(9));
    }

    #[test]
    fn a_copy_alongside_runs_once_and_its_error_stops_the_hashing() {
        let data: Vec<u8> = (0..(5 << 20) + 9u32).map(|i| (i * 3 % 251) as u8).collect();
        let leaf = LeafSize::new(64 << 10).unwrap();
        let mut copies = 0;
        let hashes = hash_alongside(leaf, &data, || {
            copies += 1;
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(copies, 1);
        assert_eq!(hashes, leaf_hashes(&data, leaf).into_parts().1);
        assert_eq!(hash_alongside(leaf, &data, || Err(7)), Err(7));
        let empty = hash_alongside(leaf, &[], || Ok::<(), ()>(())).unwrap();
        assert!(empty.is_empty());
    }

    /// tape-sha256's answers, with one output corrupted when `broken` says so
    /// for this batch.
    fn hash_unless(
        broken: fn(&[u8], &[&[u8]]) -> bool,
        prefix: &[u8],
        bodies: &[&[u8]],
        out: &mut [[u8; 32]],
    ) {
        tape_sha256::hash_many_prefixed(prefix, bodies, out);
        if broken(prefix, bodies) {
            out[bodies.len() - 1][0] ^= 1;
        }
    }

    /// A backend wrong on any one kind of batch fails the self-test: alone,
    /// mixed lengths, a uniform batch wider than the lanes, one input length,
    /// the leaf prefix only.
    #[test]
    fn the_self_test_catches_a_backend_wrong_on_any_one_kind_of_batch() {
        assert!(!known_answers_match(|p, b, o| hash_unless(
            |_, b| b.len() == 1 && b[0].len() == 65,
            p,
            b,
            o
        )));
        assert!(!known_answers_match(|p, b, o| hash_unless(
            |_, b| b.len() > 1 && b[0].len() != b[1].len(),
            p,
            b,
            o
        )));
        assert!(!known_answers_match(|p, b, o| hash_unless(
            |_, b| b.len() == tape_sha256::lane_width().max(1) + 1
                && b.iter().all(|x| x.len() == 4097),
            p,
            b,
            o
        )));
        assert!(!known_answers_match(|p, b, o| hash_unless(
            |p, b| !p.is_empty() && b.len() == 1 && b[0].is_empty(),
            p,
            b,
            o
        )));
        assert!(!known_answers_match(|p, b, o| hash_unless(
            |_, b| b.iter().any(|x| x.len() == 65_537),
            p,
            b,
            o
        )));
        // The inputs are the documented pattern: byte i = (i * 31 + seed).
        assert_eq!(pattern(4, 7), vec![7, 38, 69, 100]);
    }

    #[test]
    fn the_engine_reports_its_threads_and_lanes() {
        assert_eq!(
            hashing_threads(),
            std::thread::available_parallelism().map_or(1, usize::from)
        );
        let expected = if self_test().is_ok() {
            tape_sha256::lane_width().max(1)
        } else {
            1
        };
        assert_eq!(lane_width(), expected);
    }

    #[test]
    fn a_plain_stream_beside_an_in_place_fill_runs_once_and_the_leaves_are_right() {
        let data: Vec<u8> = (0..(6 << 20) + 5u32).map(|i| (i * 5 % 247) as u8).collect();
        let leaf = LeafSize::new(64 << 10).unwrap();
        let mut dst = vec![0u8; data.len()];
        let mut plain = None;
        let hashes = hash_in_place_alongside(
            leaf,
            &mut dst,
            |off, piece: &mut [u8]| {
                let off = off as usize;
                piece.copy_from_slice(&data[off..off + piece.len()]);
                Ok::<(), ()>(())
            },
            || {
                plain = Some(crate::sha256(&data));
                Ok(())
            },
        )
        .unwrap();
        assert!(dst == data);
        assert_eq!(hashes, leaf_hashes(&data, leaf).into_parts().1);
        assert_eq!(plain, Some(crate::sha256(&data)));
        let failing = hash_in_place_alongside(leaf, &mut dst, |_, _| Ok(()), || Err(4));
        assert_eq!(failing, Err(4));
    }

    /// A read-then-hash piece is a whole lane batch of leaves of at least
    /// `READ_PIECE` bytes when the budget allows, and never more than the
    /// budget's share.
    #[test]
    fn read_pieces_fill_the_lanes_within_the_budget() {
        let leaf = LeafSize::new(4096).unwrap();
        let lanes = lane_width() as u64;
        let big = leaves_per_piece(leaf, usize::MAX);
        assert_eq!(big % lanes, 0);
        assert!(big * 4096 >= READ_PIECE as u64);
        assert_eq!(leaves_per_piece(leaf, 3 * 4096 + 5), 3);
        assert_eq!(leaves_per_piece(leaf, 1), 1);
        let huge = LeafSize::new(64 << 20).unwrap();
        assert_eq!(leaves_per_piece(huge, usize::MAX), lanes);
    }
}
