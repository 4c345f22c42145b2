//! Hashing rates: ring single stream, multi-buffer on one core, `leaf_hashes`
//! by leaf size on all cores, seal sign/verify, and the two checks of a
//! host-side leaf list (the root over all of it, one leaf's path in its
//! `LeafIndex`) for 1,387 leaves (a 90 MB model at 64 KiB) and 150,000 (a
//! 150 GB model at 1 MiB).
//!
//! `cargo bench -p vram-crypto` (about a minute).
#![allow(
    clippy::unwrap_used,
    missing_docs,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vram_crypto::{
    leaf_hashes, sha256, sign_seal, tree_digest, verify_seal, LeafHashes, LeafIndex, LeafSize,
    SealMessage, Sha256Digest, TreeDescriptor, LEAF_PREFIX,
};

const MIB: usize = 1 << 20;

fn input(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn quick(c: &mut Criterion) -> criterion::BenchmarkGroup<'_, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group("hashing");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    g
}

fn bench_hashing(c: &mut Criterion) {
    let data = input(64 * MIB);
    let mut g = quick(c);
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("ring_single_stream_64MiB", |b| {
        b.iter(|| sha256(black_box(&data)))
    });
    g.bench_function("multibuffer_1core_1MiB_leaves_64MiB", |b| {
        let leaves: Vec<&[u8]> = data.chunks(MIB).collect();
        let mut out = vec![[0u8; 32]; leaves.len()];
        b.iter(|| tape_sha256::hash_many_prefixed(LEAF_PREFIX, black_box(&leaves), &mut out));
    });
    for leaf in [64 * 1024, MIB, 4 * MIB] {
        let l = LeafSize::new(leaf as u64).unwrap();
        g.bench_function(format!("leaf_hashes_{l}_64MiB").replace(' ', ""), |b| {
            b.iter(|| leaf_hashes(black_box(&data), l));
        });
    }
    g.finish();
}

fn bench_seal(c: &mut Criterion) {
    let tree = tree_digest(b"model bytes", LeafSize::DEFAULT);
    let msg = SealMessage {
        shard_id: "shard-0",
        model_ref: "org/model@v1",
        device_index: 0,
        byte_len: 11,
        tree: &tree,
        sealed_at_ns: 1_700_000_000_000_000_000,
        shard_index: 0,
        shard_total: 1,
        key_id: [7; 8],
        binding: None,
    };
    let key = [0x42u8; 32];
    let tag = sign_seal(&key, &msg).unwrap();
    let mut g = c.benchmark_group("seal");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(1));
    g.bench_function("sign", |b| {
        b.iter(|| sign_seal(black_box(&key), black_box(&msg)))
    });
    g.bench_function("verify", |b| {
        b.iter(|| verify_seal(black_box(&key), black_box(&msg), black_box(&tag)))
    });
    g.finish();
}

fn bench_leaf_list(c: &mut Criterion) {
    let mut g = c.benchmark_group("leaf_list");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(1));
    for (leaves, leaf) in [(1_387u64, 64 * 1024u64), (150_000, MIB as u64)] {
        let descriptor = TreeDescriptor::new(LeafSize::new(leaf).unwrap(), leaves * leaf);
        let hashes: Vec<Sha256Digest> = (0..leaves).map(|i| sha256(&i.to_le_bytes())).collect();
        let list = LeafHashes::from_parts(descriptor, hashes).unwrap();
        let index = LeafIndex::over(&list);
        g.bench_function(format!("root_{leaves}_leaves"), |b| {
            b.iter(|| black_box(&list).root())
        });
        g.bench_function(format!("index_proves_one_of_{leaves}_leaves"), |b| {
            b.iter(|| index.proves(black_box(&list), black_box(leaves / 3)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_hashing, bench_seal, bench_leaf_list);
criterion_main!(benches);
