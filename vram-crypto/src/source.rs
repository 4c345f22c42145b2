//! Leaf hashes of bytes that are not in host memory as one slice: device
//! memory read back piece by piece, or a file read with positional reads.
//!
//! The caller supplies `read(offset, buf)`, which fills `buf` with the bytes at
//! `offset`. The leaves are split into one contiguous range per hashing thread;
//! each thread reads whole leaves into its own buffer and hashes them on its
//! core across the SIMD lanes, so the reads and the hashing of different
//! threads overlap and no core waits on another's copy.

use std::ops::Range;

use crate::digest::Sha256Digest;
use crate::engine::{hash_leaf_run_threads, hashing_threads};
use crate::tree::{LeafHashes, LeafSize, TreeDescriptor, LEAF_PREFIX};

/// Every leaf hash of the `len` bytes behind `read`, on all cores. `chunk` is
/// the host memory budget for all threads together: each of the `T` threads
/// reads at most `chunk / T` bytes at a time, so the memory used does not grow
/// with the number of cores. A leaf larger than a thread's share is hashed as
/// a stream of reads of that size.
///
/// # Errors
/// The first error `read` returns.
pub fn leaf_hashes_from<E, F>(
    leaf: LeafSize,
    len: u64,
    chunk: usize,
    read: F,
) -> Result<LeafHashes, E>
where
    E: Send,
    F: Fn(u64, &mut [u8]) -> Result<(), E> + Sync,
{
    let descriptor = TreeDescriptor::new(leaf, len);
    let count = descriptor.leaf_count();
    let threads = u64::try_from(hashing_threads())
        .unwrap_or(1)
        .clamp(1, count.max(1));
    let per_thread = count.div_ceil(threads).max(1);
    // The budget is shared: one thread's buffer is its share of `chunk`.
    let chunk = chunk
        .checked_div(usize::try_from(threads).unwrap_or(usize::MAX))
        .unwrap_or(chunk)
        .max(1);
    let leaves_per_read = u64::try_from(chunk)
        .unwrap_or(u64::MAX)
        .checked_div(leaf.bytes())
        .unwrap_or(1)
        .max(1);
    let work = |first: u64, end: u64| -> Result<Vec<Sha256Digest>, E> {
        let mut out = Vec::with_capacity(usize::try_from(end.saturating_sub(first)).unwrap_or(0));
        let mut buf = Vec::new();
        let mut i = first;
        while i < end {
            let stop = i.saturating_add(leaves_per_read).min(end);
            let from = descriptor.leaf_range(i).map_or(len, |r| r.start);
            let to = descriptor
                .leaf_range(stop.saturating_sub(1))
                .map_or(len, |r| r.end);
            let n = usize::try_from(to.saturating_sub(from)).unwrap_or(usize::MAX);
            if n <= chunk {
                buf.resize(n, 0);
                read(from, &mut buf)?;
                hash_leaf_run_threads(leaf, &buf, 1, &mut out);
            } else {
                out.push(leaf_hash_from(from..to, chunk, &mut buf, &read)?);
            }
            i = stop;
        }
        Ok(out)
    };
    // One slot per range; a panic inside `read` reaches the caller unchanged.
    let mut parts: Vec<Option<Result<Vec<Sha256Digest>, E>>> = (0..threads).map(|_| None).collect();
    crate::tasks::run_tasks(
        parts
            .iter_mut()
            .zip(0u64..)
            .map(|(slot, t)| {
                let first = t.saturating_mul(per_thread).min(count);
                let end = first.saturating_add(per_thread).min(count);
                let work = &work;
                Box::new(move || *slot = Some(work(first, end))) as Box<dyn FnOnce() + Send + '_>
            })
            .collect(),
    );
    let mut hashes = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    // `run_tasks` runs every task (or propagates its panic): no slot is empty.
    for part in parts.into_iter().flatten() {
        hashes.extend(part?);
    }
    Ok(LeafHashes::from_parts_unchecked(descriptor, hashes))
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

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]
mod tests {
    use super::*;

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
        let expected = crate::leaf_hashes(&data, leaf);
        for chunk in [1, 4095, 4096, 10_000, 1 << 20] {
            let got = leaf_hashes_from(leaf, data.len() as u64, chunk, read_from(&data)).unwrap();
            assert_eq!(got.hashes(), expected.hashes(), "chunk {chunk}");
            assert_eq!(got.root(), expected.root());
        }
        let empty = leaf_hashes_from(leaf, 0, 4096, read_from(&[])).unwrap();
        assert_eq!(empty.root(), crate::tree_digest(&[], leaf));
    }

    #[test]
    fn the_chunk_is_a_budget_shared_by_all_threads() {
        let data: Vec<u8> = (0..2_000_000u32).map(|i| (i * 13 % 251) as u8).collect();
        let leaf = LeafSize::new(4096).unwrap();
        let chunk = 256 << 10;
        let share = chunk / hashing_threads();
        let largest = std::sync::atomic::AtomicUsize::new(0);
        let got = leaf_hashes_from(leaf, data.len() as u64, chunk, |off, buf: &mut [u8]| {
            largest.fetch_max(buf.len(), std::sync::atomic::Ordering::Relaxed);
            read_from(&data)(off, buf)
        })
        .unwrap();
        assert_eq!(got.root(), crate::tree_digest(&data, leaf));
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
}
