//! Prints the hashing rates this machine reaches: ring single-stream, bare
//! multi-buffer on all cores (the limit), and `tree_digest` from memory.
//!
//! `cargo run --release -p vram-crypto --example throughput [MiB]` (default 1024).
#![allow(
    clippy::print_stdout,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss
)]

use std::time::Instant;

use vram_crypto::{
    backend, hashing_threads, sha256, tree_digest, LeafSize, TreeHasher, LEAF_PREFIX,
};

/// Best of `reps` runs, in GB/s (10^9 bytes per second).
fn rate(bytes: usize, reps: u32, mut f: impl FnMut()) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    bytes as f64 / best / 1e9
}

fn bare_multibuffer(data: &[u8], leaf: usize, threads: usize) {
    let leaves: Vec<&[u8]> = data.chunks(leaf).collect();
    let per = leaves.len().div_ceil(threads);
    std::thread::scope(|s| {
        for part in leaves.chunks(per) {
            s.spawn(move || {
                let mut out = vec![[0u8; 32]; part.len()];
                tape_sha256::hash_many_prefixed(LEAF_PREFIX, part, &mut out);
                std::hint::black_box(out);
            });
        }
    });
}

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1024);
    let len = mib << 20;
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let threads = hashing_threads();
    println!(
        "backend {} ({} lanes), {} threads, input {} MiB",
        backend(),
        tape_sha256::lane_width(),
        threads,
        mib
    );

    let ring = rate(len, 2, || {
        std::hint::black_box(sha256(&data));
    });
    println!("ring sha256 single stream        {ring:6.2} GB/s");
    let one = rate(len, 2, || bare_multibuffer(&data, 1 << 20, 1));
    println!("multi-buffer 1 MiB leaves, 1 core {one:6.2} GB/s");
    let mut limit = 0f64;
    for leaf in [64 << 10, 1 << 20, 4 << 20] {
        let r = rate(len, 3, || bare_multibuffer(&data, leaf, threads));
        limit = limit.max(r);
        println!(
            "multi-buffer {:>4} KiB leaves, all cores {r:6.2} GB/s",
            leaf >> 10
        );
    }
    println!("limit (best bare multi-buffer)    {limit:6.2} GB/s");
    for leaf in [64u64 << 10, 1 << 20, 4 << 20] {
        let Ok(l) = LeafSize::new(leaf) else { continue };
        let r = rate(len, 3, || {
            std::hint::black_box(tree_digest(&data, l));
        });
        println!(
            "tree_digest {l:>7} leaves         {r:6.2} GB/s  ({:.0}% of limit)",
            100.0 * r / limit
        );
    }
    let l = LeafSize::DEFAULT;
    let chunk = TreeHasher::new(l).preferred_chunk_len();
    let r = rate(len, 2, || {
        let mut h = TreeHasher::new(l);
        for c in data.chunks(chunk) {
            h.update(c);
        }
        std::hint::black_box(h.finish());
    });
    println!(
        "TreeHasher {l}, {} MiB chunks     {r:6.2} GB/s",
        chunk >> 20
    );
    let r = rate(len, 2, || {
        let mut h = TreeHasher::new(l).with_plain_sha256();
        for c in data.chunks(chunk) {
            h.update(c);
        }
        std::hint::black_box(h.finish());
    });
    println!("TreeHasher + plain sha256         {r:6.2} GB/s");
}
