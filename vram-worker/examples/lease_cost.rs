//! What a lease costs from Rust, the calls the Python package makes for one
//! request, so that `vram-py/examples/lease_cost.py` can show what its
//! binding adds: a model sealed as `vram_residency.Manager.seal_snapshot`
//! seals it (this crate's worker, mock device, ephemeral secret), then p50
//! and p99 of
//!
//! - `lease`: `VramManager::lease_model_shared` under the policy, then
//!   `end` (Python: `mgr.lease(model, policy)` and `lease.end()`);
//! - `lease + views`: the same, plus each tensor's host bytes read through
//!   the lease (Python: `lease.tensors()` and `numpy()` on each).
//!
//!
//! With `--breakdown`, the parts of a `sampled:K` lease are timed apart,
//! interleaved with the whole, each round in the same order: the model's
//! binding tag (`check_model`), one shard's lease without the model
//! (`VramManager::lease`: the seal's tag, the sampled leaves' recorded
//! hashes proved in the shard's leaf index, the leaves), the root over the
//! recorded leaf hashes (what a full verification and each scrub sweep
//! check instead), K recorded hashes proved in a `LeafIndex` (what a sampled
//! lease checks), K leaves copied out of the mock's
//! memory into a new buffer (what a read-back staging buffer costs) and into
//! one kept across calls, and K leaves hashed: on the calling thread, and
//! through `hash_leaf_run` (which may start a helper thread).
//!
//! With `--gap-us N` each part is timed after N microseconds of busy work
//! that touches no memory: what a request's own computation between two
//! leases does to the lease's path (on a 2-vCPU KVM guest, 5 ms or more
//! doubles it: caches and predictors are cold again, whatever ran).
//!
//! ```text
//! cargo run --release -p vram-worker --example lease_cost -- \
//!     --model DIR|hf://ORG/NAME [--policy sampled:1] [--requests 2000] \
//!     [--leaf-size BYTES] [--breakdown [--gap-us N]]
//! ```
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use vram_crypto::LeafSize;
use vram_residency::{LeasePolicy, TensorMemory};
use vram_worker::{locate, DeviceSpec, SecretChoice, Worker, WorkerOptions};

fn main() {
    if let Err(e) = run() {
        eprintln!("lease_cost: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let mut model = None;
    let mut policy = LeasePolicy::Sampled { leaves: 1 };
    let mut requests = 2000usize;
    let mut leaf = None;
    let mut breakdown = false;
    let mut gap = Duration::ZERO;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--model" => model = args.next(),
            "--policy" => {
                policy = args
                    .next()
                    .ok_or("--policy needs a value")?
                    .parse()
                    .map_err(|e| format!("--policy: {e}"))?;
            }
            "--requests" => {
                requests = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n >= 10)
                    .ok_or("--requests needs a number of at least 10")?;
            }
            "--leaf-size" => {
                let bytes = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or("--leaf-size needs a number of bytes")?;
                leaf = Some(LeafSize::new(bytes).map_err(|e| format!("--leaf-size: {e}"))?);
            }
            "--breakdown" => breakdown = true,
            "--gap-us" => {
                let n: u64 = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or("--gap-us needs a number of microseconds")?;
                gap = Duration::from_micros(n);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let model = model.ok_or("--model DIR|hf://ORG/NAME is required")?;
    let location = locate(&model, true).map_err(|e| e.to_string())?;
    // A measurement outlives nothing it seals: an ephemeral secret.
    let worker = Worker::open_with_leaf_size(
        &WorkerOptions {
            device: DeviceSpec::Mock,
            secret: SecretChoice::Ephemeral,
            audit_log: None,
            quiet: true,
        },
        leaf,
    )
    .map_err(|e| e.to_string())?;
    let sealed = Arc::new(worker.seal_snapshot(&location).map_err(|e| e.to_string())?);
    let manager = worker.manager();
    let lease_only = || -> Result<(), String> {
        let lease = manager
            .lease_model_shared(&sealed, policy)
            .map_err(|e| e.to_string())?;
        lease.end();
        Ok(())
    };
    let lease_and_views = || -> Result<usize, String> {
        let lease = manager
            .lease_model_shared(&sealed, policy)
            .map_err(|e| e.to_string())?;
        let mut bytes = 0usize;
        for handle in lease.handles() {
            let shard = handle
                .with_tensors(|t| -> Result<usize, String> {
                    let mut n = 0usize;
                    for name in t.names() {
                        match t.get(name).map_err(|e| e.to_string())?.memory() {
                            TensorMemory::Host(b) => {
                                n = n.saturating_add(std::hint::black_box(b).len());
                            }
                            _ => return Err("not host memory (run on the mock)".into()),
                        }
                    }
                    Ok(n)
                })
                .map_err(|e| e.to_string())??;
            bytes = bytes.saturating_add(shard);
        }
        lease.end();
        Ok(bytes)
    };
    if breakdown {
        return lease_breakdown(manager, &sealed, policy, requests, gap);
    }
    // Warm up.
    for _ in 0..20 {
        lease_and_views()?;
    }
    let mut only = Vec::with_capacity(requests);
    let mut views = Vec::with_capacity(requests);
    for _ in 0..requests {
        let t = Instant::now();
        lease_only()?;
        only.push(t.elapsed());
        let t = Instant::now();
        lease_and_views()?;
        views.push(t.elapsed());
    }
    println!(
        "rust lease cost: {} ({} bytes), mock device, {policy}, {requests} calls each, CPU: {}",
        location.model_ref,
        sealed.vram_bytes(),
        cpu_name()
    );
    for (name, runs) in [("lease", &only), ("lease + views", &views)] {
        println!(
            "  {name:<14} p50 {:>8.1} us   p99 {:>8.1} us",
            us(percentile(runs, 0.5)),
            us(percentile(runs, 0.99))
        );
    }
    Ok(())
}

/// The parts of a lease, timed apart (see the crate docs above).
fn lease_breakdown(
    manager: &vram_residency::VramManager,
    model: &Arc<vram_residency::SealedModel>,
    policy: LeasePolicy,
    requests: usize,
    gap: Duration,
) -> Result<(), String> {
    let k = match policy {
        LeasePolicy::Sampled { leaves } => usize::try_from(leaves).unwrap_or(1),
        _ => return Err("--breakdown: a sampled:K policy".into()),
    };
    let shard = model.shards().first().ok_or("a model without shards")?;
    let descriptor = shard.tree_digest().descriptor;
    let leaf = descriptor.leaf_size;
    let leaf_bytes = usize::try_from(leaf.bytes()).map_err(|_| "a leaf larger than memory")?;
    let span = leaf_bytes.saturating_mul(k);
    let mut kept = vec![0u8; span];
    let mut hashes = Vec::with_capacity(k);
    // The shard's own index is private to it; one built the same way.
    let index = vram_crypto::LeafIndex::over(shard.leaf_hashes());
    let count = u64::try_from(shard.leaf_hashes().len()).unwrap_or(u64::MAX);
    // K leaves spread over the shard (which ones does not change the cost).
    let drawn: Vec<u64> = (0..u64::try_from(k).unwrap_or(1))
        .map(|i| {
            i.wrapping_mul(7919)
                .wrapping_add(count / 3)
                .checked_rem(count)
                .unwrap_or(0)
        })
        .collect();
    let mut parts: Vec<(&str, Vec<Duration>)> = [
        "lease of the model (sampled, shared handles)",
        "  binding tag (check_model)",
        "  one shard's lease (seal tag, index, leaves)",
        "    root over the leaf hashes (full, scrub)",
        "    K recorded hashes proved in the index",
        "    leaves copied into a new buffer",
        "    leaves copied into a kept buffer",
        "    leaves hashed, calling thread",
        "    leaves hashed, hash_leaf_run",
    ]
    .into_iter()
    .map(|n| (n, Vec::with_capacity(requests)))
    .collect();
    let mut round = |record: bool| -> Result<(), String> {
        let mut times = [Duration::ZERO; 9];
        spin(gap);
        let t = Instant::now();
        manager
            .lease_model_shared(model, policy)
            .map_err(|e| e.to_string())?
            .end();
        times[0] = t.elapsed();
        spin(gap);
        let t = Instant::now();
        manager.check_model(model).map_err(|e| e.to_string())?;
        times[1] = t.elapsed();
        spin(gap);
        let t = Instant::now();
        let lease = manager.lease(shard, policy).map_err(|e| e.to_string())?;
        times[2] = t.elapsed();
        spin(gap);
        let t = Instant::now();
        std::hint::black_box(shard.leaf_hashes().root());
        times[3] = t.elapsed();
        spin(gap);
        let t = Instant::now();
        for i in &drawn {
            std::hint::black_box(index.proves(shard.leaf_hashes(), *i));
        }
        times[4] = t.elapsed();
        let bytes = lease.host_bytes().map_err(|e| e.to_string())?;
        let src = bytes.get(..span.min(bytes.len())).unwrap_or_default();
        spin(gap);
        let t = Instant::now();
        let mut fresh = vec![0u8; src.len()];
        fresh.copy_from_slice(src);
        std::hint::black_box(&fresh);
        times[5] = t.elapsed();
        drop(fresh);
        spin(gap);
        let t = Instant::now();
        kept.truncate(0);
        kept.extend_from_slice(src);
        std::hint::black_box(&kept);
        times[6] = t.elapsed();
        spin(gap);
        let t = Instant::now();
        hashes.clear();
        vram_crypto::hash_leaf_run_threads(leaf, src, 1, &mut hashes);
        times[7] = t.elapsed();
        spin(gap);
        let t = Instant::now();
        hashes.clear();
        vram_crypto::hash_leaf_run(leaf, src, &mut hashes);
        times[8] = t.elapsed();
        drop(bytes);
        drop(lease);
        if record {
            for ((_, runs), t) in parts.iter_mut().zip(times) {
                runs.push(t);
            }
        }
        Ok(())
    };
    for _ in 0..20 {
        round(false)?;
    }
    for _ in 0..requests {
        round(true)?;
    }
    println!(
        "rust lease breakdown: {} ({} bytes, {} leaves of {} bytes), mock device, {policy}, \
         {requests} rounds, hashing backend {}, CPU: {}",
        model.model_ref(),
        model.vram_bytes(),
        shard.leaf_hashes().len(),
        leaf.bytes(),
        vram_crypto::backend(),
        cpu_name()
    );
    for (name, runs) in &parts {
        println!(
            "  {name:<46} p50 {:>8.1} us   p99 {:>8.1} us",
            us(percentile(runs, 0.5)),
            us(percentile(runs, 0.99))
        );
    }
    Ok(())
}

/// Busy for `gap` without touching memory: what a request's computation
/// between two leases does to the timers, predictors and caches of the
/// lease's path (`--gap-us`; nothing when zero).
fn spin(gap: Duration) {
    let t = Instant::now();
    while t.elapsed() < gap {}
}

fn percentile(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or_default()
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}
