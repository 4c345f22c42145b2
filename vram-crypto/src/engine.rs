//! The leaf-hashing engine: multi-buffer SHA-256 (tape-sha256) across SIMD
//! lanes, contiguous leaf ranges across all cores, guarded by a power-on
//! known-answer test against ring.
//!
//! Threads come from `std::thread::scope`, not a pool such as rayon: the work
//! is perfectly regular (equal-sized leaves, one contiguous range per core), so
//! work stealing buys nothing, and the crate keeps one dependency fewer. A
//! scope costs a few tens of microseconds per call, so inputs under
//! [`PARALLEL_MIN_BYTES`] are hashed on the calling thread.

use std::sync::OnceLock;

use crate::digest::Sha256Digest;
use crate::tree::{LeafHashes, LeafSize, TreeDescriptor, TreeDigest, LEAF_PREFIX};
use crate::CryptoError;

/// Below this many bytes a call is hashed on the calling thread only.
const PARALLEL_MIN_BYTES: usize = 512 * 1024;

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
            if known_answers_match() {
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

fn batch_matches(prefix: &[u8], bodies: &[&[u8]]) -> bool {
    let mut out = vec![[0u8; 32]; bodies.len()];
    tape_sha256::hash_many_prefixed(prefix, bodies, &mut out);
    bodies
        .iter()
        .zip(&out)
        .all(|(b, o)| ring_prefixed(prefix, b) == *o)
}

fn known_answers_match() -> bool {
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
        ok &= all.iter().all(|b| batch_matches(prefix, &[b]));
        ok &= batch_matches(prefix, &all);
        for input in &inputs {
            let uniform: Vec<Vec<u8>> = (0..lanes.saturating_add(1))
                .zip(0u8..)
                .map(|(_, s)| pattern(input.len(), s))
                .collect();
            let refs: Vec<&[u8]> = uniform.iter().map(Vec::as_slice).collect();
            ok &= batch_matches(prefix, &refs);
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

/// Hashes `LEAF_PREFIX || body` for each body, one contiguous range of
/// bodies per thread, at most `max_threads` threads (the caller's included).
pub(crate) fn hash_bodies(bodies: &[&[u8]], max_threads: usize, out: &mut [[u8; 32]]) {
    let engine = engine();
    let n = bodies.len().min(out.len());
    let (bodies, out) = (
        bodies.get(..n).unwrap_or(&[]),
        out.get_mut(..n).unwrap_or(&mut []),
    );
    let total: usize = bodies
        .iter()
        .map(|b| b.len())
        .fold(0, usize::saturating_add);
    let threads = if total < PARALLEL_MIN_BYTES {
        1
    } else {
        max_threads.clamp(1, n.max(1))
    };
    if threads <= 1 {
        hash_serial(engine, bodies, out);
        return;
    }
    // Contiguous ranges of equal length; above one lane group, whole lane
    // groups so that no thread leaves lanes idle except the last.
    let lanes = lane_width();
    let mut per = n.div_ceil(threads);
    if per > lanes {
        per = per.div_ceil(lanes).saturating_mul(lanes);
    }
    crate::tasks::run_tasks(
        bodies
            .chunks(per)
            .zip(out.chunks_mut(per))
            .map(|(b, o)| {
                Box::new(move || hash_serial(engine, b, o)) as Box<dyn FnOnce() + Send + '_>
            })
            .collect(),
    );
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

/// Hashes leaf bodies (anywhere in memory) and appends their hashes to `out`.
pub(crate) fn append_hashes(bodies: &[&[u8]], max_threads: usize, out: &mut Vec<Sha256Digest>) {
    let mut raw = vec![[0u8; 32]; bodies.len()];
    hash_bodies(bodies, max_threads, &mut raw);
    out.extend(raw.into_iter().map(Sha256Digest));
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
        assert!(known_answers_match());
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
        for threads in [0, 1, 2, 3, 7, 64] {
            let mut got = vec![[0u8; 32]; bodies.len()];
            hash_bodies(&bodies, threads, &mut got);
            assert_eq!(got, want, "{threads} threads");
        }
    }
}
