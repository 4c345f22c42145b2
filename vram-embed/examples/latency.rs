//! Request latency on sealed weights: p50 and p99 of whole requests (lease,
//! materialisation, forward pass) without a lease (the file in host memory,
//! unverified), with a sampled lease and with a full one, and the share of
//! the p50 the lease's verification takes. Run by `cargo xtask bench` when
//! the real model is in the hub cache (`cargo xtask hf-cache`):
//!
//! ```text
//! cargo run --release -p vram-embed --example latency -- \
//!     --model hf://sentence-transformers/all-MiniLM-L6-v2 [--requests 200] \
//!     [--leaf-size BYTES]
//! ```
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss
)]

use std::time::{Duration, Instant};

use vram_embed::{Embedder, Embedding, LeasedWeights, ModelSnapshot, SafetensorsFile};
use vram_residency::{LeasePolicy, SealedModel, VramManager};
use vram_worker::{locate, DeviceSpec, SecretChoice, Worker, WorkerOptions};

const TEXT: &str = "Sealed model weights, verified in device memory before every request.";

fn main() {
    if let Err(e) = run() {
        eprintln!("latency: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let mut model = None;
    let mut requests = 200usize;
    let mut leaf = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--model" => model = args.next(),
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
                    .and_then(|n| n.parse::<u64>().ok())
                    .ok_or("--leaf-size needs a number of bytes")?;
                leaf = Some(vram_residency::LeafSize::new(bytes).map_err(|e| e.to_string())?);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let model = model.ok_or("--model DIR|hf://ORG/NAME is required")?;
    let location = locate(&model, true).map_err(|e| e.to_string())?;
    let snapshot = ModelSnapshot::open(&location.dir).map_err(|e| e.to_string())?;
    let embedder = Embedder::new(&snapshot).map_err(|e| e.to_string())?;
    let file = SafetensorsFile::read(&location.weights).map_err(|e| e.to_string())?;
    // A measurement outlives nothing it seals: an ephemeral secret.
    let w = Worker::open_with_leaf_size(
        &WorkerOptions {
            device: DeviceSpec::Mock,
            secret: SecretChoice::Ephemeral,
            audit_log: None,
            quiet: true,
        },
        // vram-embed's and vram-serve's leaf size unless told.
        Some(leaf.unwrap_or(vram_worker::SERVING_LEAF_SIZE)),
    )
    .map_err(|e| e.to_string())?;
    let model = w.seal_snapshot(&location).map_err(|e| e.to_string())?;
    let manager = w.manager();
    let leaves: usize = model.shards().iter().map(|s| s.leaf_hashes().len()).sum();
    let leaf_kib = model
        .shards()
        .first()
        .map_or(0, |s| s.tree_digest().descriptor.leaf_size.bytes() / 1024);
    println!(
        "request latency: {} ({} bytes in {} shard(s), {leaves} leaves of {leaf_kib} KiB), mock device, {requests} requests each, CPU: {}",
        location.model_ref,
        model.vram_bytes(),
        model.shards().len(),
        cpu_name()
    );
    println!(
        "  {:<12} {:>9} {:>9} {:>12} {:>14} {:>11}",
        "weights", "p50 ms", "p99 ms", "verify p50", "verify / p50", "converting"
    );
    // Warm up caches and the allocator once.
    time_requests(&embedder, 5, &Weights::File(&file))?;
    let unsealed = time_requests(&embedder, requests, &Weights::File(&file))?;
    report("unsealed", &unsealed);
    let mut sampled = Vec::new();
    for policy in [
        LeasePolicy::Sampled { leaves: 1 },
        LeasePolicy::Sampled { leaves: 2 },
        LeasePolicy::Sampled { leaves: 4 },
        LeasePolicy::Full,
    ] {
        let runs = time_requests(
            &embedder,
            requests,
            &Weights::Lease(manager, &model, policy),
        )?;
        report(&policy.to_string(), &runs);
        if let LeasePolicy::Sampled { leaves: k } = policy {
            sampled.push((k, percentile(&runs.total, 0.5)));
        }
    }
    println!(
        "  detection of one corrupt leaf of {leaves} (one server serving requests back to back):"
    );
    for (k, p50) in sampled {
        let per_request = 1.0 - (1.0 - 1.0 / leaves as f64).powf(f64::from(k));
        let per_minute = (60.0 / p50.as_secs_f64()).floor();
        println!(
            "    sampled:{k}: p = {:.2}% per request, {:.1}% within 100 requests, {:.4}% within a minute ({per_minute} requests)",
            100.0 * per_request,
            100.0 * (1.0 - (1.0 - per_request).powi(100)),
            100.0 * (1.0 - (1.0 - per_request).powf(per_minute))
        );
    }
    Ok(())
}

/// Where a request's weights come from.
enum Weights<'a> {
    /// The file in host memory, unverified.
    File(&'a SafetensorsFile),
    /// A lease per request on the sealed model, under a policy.
    Lease(&'a VramManager, &'a SealedModel, LeasePolicy),
}

impl Weights<'_> {
    /// One request: its embedding and the lease's verification time.
    fn request(&self, embedder: &Embedder) -> Result<(Embedding, Option<Duration>), String> {
        match self {
            Self::File(file) => embedder
                .embed(*file, TEXT)
                .map(|e| (e, None))
                .map_err(|e| e.to_string()),
            Self::Lease(manager, model, policy) => {
                LeasedWeights::with_lease(manager, model, *policy, |l| {
                    let verify = l.lease().verification_cost().2;
                    embedder.embed(l, TEXT).map(|e| (e, Some(verify)))
                })
                .and_then(|r| r)
                .map_err(|e| e.to_string())
            }
        }
    }
}

/// Per request: (whole request, lease verification, materialisation).
struct Run {
    total: Vec<Duration>,
    verify: Vec<Duration>,
    materialise: Vec<Duration>,
}

fn time_requests(embedder: &Embedder, n: usize, weights: &Weights<'_>) -> Result<Run, String> {
    let mut run = Run {
        total: Vec::with_capacity(n),
        verify: Vec::with_capacity(n),
        materialise: Vec::with_capacity(n),
    };
    for _ in 0..n {
        let t0 = Instant::now();
        let (e, verify) = weights.request(embedder)?;
        run.total.push(t0.elapsed());
        run.verify.push(verify.unwrap_or_default());
        run.materialise.push(e.timings.materialise);
    }
    Ok(run)
}

fn percentile(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn report(name: &str, run: &Run) {
    let p50 = percentile(&run.total, 0.5);
    let verify = percentile(&run.verify, 0.5);
    println!(
        "  {name:<12} {:>9.2} {:>9.2} {:>9.3} ms {:>13.2}% {:>8.2} ms",
        ms(p50),
        ms(percentile(&run.total, 0.99)),
        ms(verify),
        100.0 * verify.as_secs_f64() / p50.as_secs_f64(),
        ms(percentile(&run.materialise, 0.5)),
    );
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
