//! `vram bench`: hashing, seal and verify throughput with ratios against
//! baselines measured in the same run. Reports; never asserts on time.

use crate::cli::BenchArgs;
use crate::exit::CliError;
use crate::figures::gbps;
use crate::synthetic::SyntheticModel;
use std::io::Read;
use std::process::Command;
use std::time::Instant;
use vram_crypto::{backend, tree_digest, LeafSize, LEAF_PREFIX};
use vram_residency::SealSource;
use vram_residency::{SealHashing, SealRequest, SealedShard, VerifyPolicy, VramManager};
use vram_validation::{format_bytes, ModelRef};
use vram_worker::{build_manager, DeviceSelection as Selection, ManagerOptions, SecretChoice};

struct Report {
    json: bool,
    rows: Vec<serde_json::Value>,
}

impl Report {
    fn line(&mut self, name: &str, bytes: u64, secs: f64, baseline: Option<(&str, f64)>) -> f64 {
        let rate = gbps(bytes, secs);
        let ratio = baseline.map(|(b, r)| (b.to_string(), if r > 0.0 { rate / r } else { 0.0 }));
        if !self.json {
            let tail = ratio
                .as_ref()
                .map(|(b, r)| format!("  {r:>6.2}x {b}"))
                .unwrap_or_default();
            println!("  {name:<44} {secs:>8.3} s  {rate:>7.2} GB/s{tail}");
        }
        self.rows.push(serde_json::json!({
            "name": name, "bytes": bytes, "seconds": secs, "gb_per_s": rate,
            "baseline": ratio.as_ref().map(|r| r.0.clone()), "ratio": ratio.map(|r| r.1),
        }));
        rate
    }
}

/// The fastest of `n` runs of `f`; the first error of any run is returned.
fn best<T, E>(n: u32, mut f: impl FnMut() -> Result<T, E>) -> (Result<T, E>, f64) {
    let (mut out, mut secs) = time(&mut f);
    for _ in 1..n {
        if out.is_err() {
            break;
        }
        let (o, s) = time(&mut f);
        if o.is_err() || s < secs {
            (out, secs) = (o, s);
        }
    }
    (out, secs)
}

fn time<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let out = f();
    (out, t.elapsed().as_secs_f64())
}

/// The machine's limit for leaf hashing: the bare multi-buffer kernel on all
/// cores, with no tree bookkeeping around it.
fn bare_multibuffer(data: &[u8], leaf: usize) -> f64 {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let leaves: Vec<&[u8]> = data.chunks(leaf).collect();
    let per = leaves.len().div_ceil(threads).max(1);
    let ((), secs) = time(|| {
        std::thread::scope(|s| {
            for part in leaves.chunks(per) {
                s.spawn(move || {
                    let mut out = vec![[0u8; 32]; part.len()];
                    tape_sha256::hash_many_prefixed(LEAF_PREFIX, part, &mut out);
                    out
                });
            }
        });
    });
    secs
}

/// Refuses sizes that cannot fit before any work: `--size` is held in host
/// memory and sealed on the device, `--sampled-size` is sealed on the device.
fn check_sizes_fit(selection: &Selection, size: u64, big: u64) -> Result<(), CliError> {
    let device = usize::try_from(selection.target())
        .ok()
        .and_then(|i| selection.devices().get(i))
        .ok_or_else(|| CliError::env("the selected device is missing"))?;
    let total = device
        .memory_info()
        .map_err(|e| CliError::env(format!("device {}: {e}", selection.target())))?
        .total;
    for (flag, bytes) in [("--size", size), ("--sampled-size", big)] {
        if bytes > total {
            return Err(CliError::usage(format!(
                "{flag} {} does not fit on {}:{} ({} of memory); pick a smaller size",
                format_bytes(bytes),
                selection.kind(),
                selection.target(),
                format_bytes(total)
            )));
        }
    }
    if let Some(host) = host_memory_bytes() {
        if size > host {
            return Err(CliError::usage(format!(
                "--size {} does not fit in this host's {} of memory; pick a smaller size",
                format_bytes(size),
                format_bytes(host)
            )));
        }
    }
    Ok(())
}

/// Total host memory (Linux), when it can be read.
fn host_memory_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// What each measured path is compared with, measured once per run.
struct Baselines {
    /// One ring SHA-256 stream (one core), GB/s.
    ring: f64,
    /// The bare multi-buffer leaf hashing rate on all cores: the limit.
    limit: f64,
    /// `sha256sum` over the same file, whole process, GB/s (0: not available).
    sha256sum: f64,
    /// The raw pinned host-to-device copy rate (CUDA only).
    raw_copy: Option<f64>,
}

/// A bench run: `vram bench` measures each path below in turn (baselines,
/// digest from a file, the CUDA copy and hashing paths, seals from memory,
/// full verification, seals from a file, sampled verification, peak host
/// memory) and reports each against the baselines.
pub(crate) fn run(args: &BenchArgs, quiet: bool) -> Result<(), CliError> {
    let (size, big) = (args.size, args.sampled_size);
    if size < 1 << 20 {
        return Err(CliError::usage("--size must be at least 1MiB"));
    }
    let selection = Selection::select(args.device.device)?;
    selection.announce(quiet);
    check_sizes_fit(&selection, size, big)?;
    // The leaf size a manager picks for this device (64 KiB on CUDA).
    let leaf = if selection.kind() == "cuda" {
        vram_residency::CUDA_DEFAULT_LEAF_SIZE
    } else {
        LeafSize::DEFAULT
    };
    let mut r = Report {
        json: args.json,
        rows: Vec::new(),
    };
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    if !args.json {
        println!(
            "vram bench: {} buffer, leaf {leaf}, {cores} cores, hash backend {}, device {}",
            format_bytes(size),
            backend(),
            selection.kind()
        );
    }
    let len =
        usize::try_from(size).map_err(|_| CliError::usage("--size too large for this host"))?;
    let mut data = vec![0u8; len];
    SyntheticModel::new(42, size)
        .read_exact(&mut data)
        .map_err(|e| CliError::env(format!("generate: {e}")))?;

    let (ring, limit) = hashing_baselines(&mut r, &data, leaf)?;
    let scratch = crate::scratch::ScratchDir::new("vram-bench")?;
    let dir = scratch.path().to_path_buf();
    let file = dir.join("model.bin");
    let sha256sum = digest_from_file(&mut r, &data, &file, leaf, limit)?;
    let raw_copy = cuda_copy_paths(&mut r, &selection, &data)?;
    let base = Baselines {
        ring,
        limit,
        sha256sum,
        raw_copy,
    };

    // Nothing a bench seals outlives it: an ephemeral secret, by choice.
    let on = |hashing| -> Result<_, CliError> {
        let options = ManagerOptions {
            audit: None,
            leaf: Some(leaf),
            hashing,
        };
        Ok(build_manager(
            SecretChoice::Ephemeral.load()?,
            &selection,
            options,
        )?)
    };
    let mgr = on(SealHashing::Host)?;
    let model_ref = ModelRef::new("bench:synthetic")?;
    let req = SealRequest::new(model_ref, selection.target());
    // Hashed on the device after the upload, 64 leaves cross-checked on the
    // host: only on a device that hashes (the mock's emulation saves nothing).
    let device_mgr = if selection.kind() == "cuda" {
        Some(on(SealHashing::ON_DEVICE)?)
    } else {
        None
    };
    let shard = seal_from_memory(
        &mut r,
        &selection,
        &mgr,
        device_mgr.as_ref(),
        &req,
        &data,
        &base,
    )?;
    drop(data);
    full_verify(&mut r, &mgr, &shard, size, &base)?;
    drop(shard);
    seal_from_file(&mut r, &mgr, device_mgr.as_ref(), &req, &file, size, limit)?;
    let _ = std::fs::remove_file(&file);
    sampled_verify(&mut r, &mgr, &req, big, args.json)?;

    // Peak host memory of a streamed seal of a file (a separate process, so this
    // process's buffers do not count).
    peak_rss_check(&mut r, &dir, big, "mock", args.json)?;
    // Through a real device the host keeps only staging buffers (and the
    // driver's own memory), whatever the model size.
    if selection.kind() == "cuda" {
        let device = format!("cuda:{}", selection.target());
        peak_rss_check(&mut r, &dir, big, &device, args.json)?;
    }
    drop(scratch);
    if args.json {
        let v = serde_json::json!({
            "backend": backend(), "cores": cores, "leaf_size": leaf.bytes(),
            "device_kind": selection.kind(), "bytes": size, "results": r.rows,
        });
        println!("{v:#}");
    }
    Ok(())
}

/// One ring SHA-256 stream, the bare multi-buffer limit, and the tree digest
/// from memory against it. Returns (ring rate, limit), GB/s.
fn hashing_baselines(r: &mut Report, data: &[u8], leaf: LeafSize) -> Result<(f64, f64), CliError> {
    let size = data.len() as u64;
    let leaf_usize =
        usize::try_from(leaf.bytes()).map_err(|_| CliError::usage("leaf too large"))?;
    let (_, ring_s) = best(3, || {
        Ok::<_, CliError>(ring::digest::digest(&ring::digest::SHA256, data))
    });
    let ring_rate = r.line("ring SHA-256, one stream (1 core)", size, ring_s, None);
    // Best of 5: the limit is what the machine can do, and on a shared VM a
    // single run is often disturbed (a limit measured low would flatter
    // every ratio below it).
    let limit_s = (0..5)
        .map(|_| bare_multibuffer(data, leaf_usize))
        .fold(f64::MAX, f64::min);
    let limit = r.line(
        "bare multi-buffer leaves, all cores (limit)",
        size,
        limit_s,
        Some(("ring", ring_rate)),
    );

    // Tree digest from memory.
    let (_, tree_s) = best(3, || Ok::<_, CliError>(tree_digest(data, leaf)));
    r.line(
        "tree digest from memory",
        size,
        tree_s,
        Some(("limit", limit)),
    );
    Ok((ring_rate, limit))
}

/// Writes `data` to `file` and digests it from the page cache, against
/// `sha256sum` on the same file. Returns the `sha256sum` rate (0: absent).
fn digest_from_file(
    r: &mut Report,
    data: &[u8],
    file: &std::path::Path,
    leaf: LeafSize,
    limit: f64,
) -> Result<f64, CliError> {
    let size = data.len() as u64;
    std::fs::write(file, data).map_err(|e| crate::exit::io_error(file, &e))?;
    let sha = time(|| Command::new("sha256sum").arg(file).output());
    let sha_rate = match sha {
        (Ok(out), secs) if out.status.success() => {
            r.line("sha256sum (process, same file)", size, secs, None)
        }
        _ => {
            if !r.json {
                println!("  sha256sum not available: no whole-process baseline");
            }
            0.0
        }
    };
    // What `vram digest` does (a mapped file), then the positional reads it
    // falls back to when a file cannot be mapped.
    let (res, map_s) = best(3, || -> Result<(), CliError> {
        super::digest::digest_path(file, leaf, false, true, super::digest::NamedBy::Operator)
            .map(|_| ())
    });
    res?;
    r.line(
        "tree digest from a mapped file (page cache)",
        size,
        map_s,
        Some(("limit", limit)),
    );
    let (res, file_s) = best(3, || -> Result<(), CliError> {
        let f = std::fs::File::open(file).map_err(|e| crate::exit::io_error(file, &e))?;
        let pb = indicatif::ProgressBar::hidden();
        super::digest::digest_file_parallel(&f, file, size, leaf, &pb).map(|_| ())
    });
    res?;
    r.line(
        "tree digest from file, positional reads",
        size,
        file_s,
        Some(("limit", limit)),
    );
    if sha_rate > 0.0 {
        r.line(
            "tree digest from a mapped file vs sha256sum",
            size,
            map_s,
            Some(("sha256sum", sha_rate)),
        );
    }
    whole_processes(r, file, size, limit);
    Ok(sha_rate)
}

/// Whole processes on the same cached file, best of 3 each: `vram digest`
/// (this binary) against the limit, and the tools a user would pick instead
/// when they are installed (`b3sum`, `fsverity digest`); each says so when it
/// is not. Start-up (a `vram digest` of a one-byte file) is reported too.
fn whole_processes(r: &mut Report, file: &std::path::Path, size: u64, limit: f64) {
    let run = |program: &std::path::Path, args: &[&str], file: &std::path::Path| {
        let (out, secs) = best(3, || {
            Command::new(program)
                .args(args)
                .arg(file)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .map_err(|e| e.to_string())
                .and_then(|s| {
                    if s.success() {
                        Ok(())
                    } else {
                        Err(format!("exit status {s}"))
                    }
                })
        });
        out.map(|()| secs)
    };
    let Ok(me) = std::env::current_exe() else {
        if !r.json {
            println!("  this binary's path is unknown: no whole-process vram digest");
        }
        return;
    };
    let vram_secs = match run(&me, &["digest", "--quiet"], file) {
        Ok(secs) => {
            r.line(
                "vram digest (process, best of 3)",
                size,
                secs,
                Some(("limit", limit)),
            );
            secs
        }
        Err(e) => {
            if !r.json {
                println!("  vram digest as a process failed ({e})");
            }
            return;
        }
    };
    let tiny = file.with_extension("one-byte");
    if std::fs::write(&tiny, b"x").is_ok() {
        if let Ok(secs) = run(&me, &["digest", "--quiet"], &tiny) {
            if !r.json {
                println!(
                    "  vram digest of a 1-byte file (start-up)      {:>8.2} ms",
                    secs * 1e3
                );
            }
            r.rows.push(serde_json::json!({
                "name": "vram digest start-up (1-byte file)", "seconds": secs,
            }));
        }
        let _ = std::fs::remove_file(&tiny);
    }
    let tools: [(&str, &[&str], &str); 2] = [
        ("b3sum", &[], "b3sum (BLAKE3, process, best of 3)"),
        (
            "fsverity",
            &["digest", "--hash-alg=sha256"],
            "fsverity digest (process, best of 3)",
        ),
    ];
    for (tool, args, name) in tools {
        match run(std::path::Path::new(tool), args, file) {
            Ok(secs) => {
                let rate = r.line(name, size, secs, Some(("limit", limit)));
                let vs = format!("vram digest vs {tool}");
                r.line(&vs, size, vram_secs, Some((tool, rate)));
            }
            Err(_) => {
                if !r.json {
                    println!(
                        "  {tool} not installed (Debian package `{tool}`): no {tool} baseline in this run"
                    );
                }
            }
        }
    }
}

/// On a CUDA device: the raw pinned host-to-device copy rate (the ceiling
/// for sealing), on-device hashing rates and the upload paths. Returns the
/// raw copy rate; `None` elsewhere.
fn cuda_copy_paths(
    r: &mut Report,
    selection: &Selection,
    data: &[u8],
) -> Result<Option<f64>, CliError> {
    #[cfg(feature = "cuda")]
    if let Some(dev) = selection.cuda_device() {
        let size = data.len() as u64;
        let (secs, buffer) = raw_pinned_copy(dev, size)?;
        let rate = r.line("raw host-to-device copy (pinned)", size, secs, None);
        on_device_hash_rates(r, &buffer, size)?;
        drop(buffer);
        upload_paths(r, dev, data, size, rate)?;
        return Ok(Some(rate));
    }
    let _ = (r, selection, data);
    Ok(None)
}

/// Seals from memory: cold (mock), with the plain SHA-256, plain, and hashed
/// on the device (`device_mgr`, CUDA). Returns the plain seal's shard, for
/// verification.
fn seal_from_memory(
    r: &mut Report,
    selection: &Selection,
    mgr: &VramManager,
    device_mgr: Option<&VramManager>,
    req: &SealRequest,
    data: &[u8],
    base: &Baselines,
) -> Result<SealedShard, CliError> {
    let size = data.len() as u64;
    let limit = base.limit;
    // The first allocation of a mock buffer pays the host's first-touch page
    // faults (slow in a VM, absent on a real device); the mock then reuses the
    // freed memory as a caching allocator would. Both are reported.
    let (shard, cold_s) = time(|| mgr.seal(req, SealSource::Bytes(data)));
    drop(shard?);
    if selection.is_mock() {
        r.line(
            "seal from memory (cold mock memory)",
            size,
            cold_s,
            Some(("limit", limit)),
        );
    }
    // With the plain SHA-256 a catalog publishes, computed in the same pass:
    // one sequential stream, so one core's SHA-256 rate is its ceiling. (Before the
    // plain seal below, so both reuse the memory the cold seal touched.)
    let mut plain_req = req.clone();
    plain_req.compute_sha256 = true;
    let (plain_shard, plain_s) = best(3, || {
        mgr.seal(&plain_req, SealSource::Bytes(data)).map(drop)
    });
    plain_shard?;
    r.line(
        "seal from memory + plain SHA-256",
        size,
        plain_s,
        Some(("ring stream", base.ring)),
    );
    let (sealed, seal_s) = best(3, || mgr.seal(req, SealSource::Bytes(data)).map(drop));
    sealed?;
    let shard = mgr.seal(req, SealSource::Bytes(data))?;
    r.line("seal from memory", size, seal_s, Some(("limit", limit)));
    if let Some(raw) = base.raw_copy {
        r.line(
            "seal from memory vs raw copy",
            size,
            seal_s,
            Some(("raw copy", raw)),
        );
    }
    if base.sha256sum > 0.0 {
        r.line(
            "seal from memory vs sha256sum",
            size,
            seal_s,
            Some(("sha256sum", base.sha256sum)),
        );
    }
    if let Some(dm) = device_mgr {
        let (dshard, dseal_s) = best(3, || dm.seal(req, SealSource::Bytes(data)));
        drop(dshard?);
        r.line(
            "seal from memory, hashed on the device",
            size,
            dseal_s,
            Some(("limit", limit)),
        );
        if let Some(raw) = base.raw_copy {
            r.line(
                "seal hashed on the device vs raw copy",
                size,
                dseal_s,
                Some(("raw copy", raw)),
            );
        }
    }
    Ok(shard)
}

/// Full verification of `shard` (on the device where it hashes, and then
/// by host read-back too).
fn full_verify(
    r: &mut Report,
    mgr: &VramManager,
    shard: &SealedShard,
    size: u64,
    base: &Baselines,
) -> Result<(), CliError> {
    let (full, full_s) = best(3, || mgr.verify_with(shard, VerifyPolicy::Full));
    let full = full?;
    r.line(
        &format!("full verify ({:?})", full.hash_path),
        size,
        full_s,
        Some(("limit", base.limit)),
    );
    if base.sha256sum > 0.0 {
        r.line(
            "full verify vs sha256sum",
            size,
            full_s,
            Some(("sha256sum", base.sha256sum)),
        );
    }
    if full.hash_path == vram_residency::HashPath::OnDevice {
        let (host, host_s) = best(3, || mgr.verify_with(shard, VerifyPolicy::FullHostReadback));
        host?;
        r.line(
            "full verify (host read-back)",
            size,
            host_s,
            Some(("limit", base.limit)),
        );
    }
    Ok(())
}

/// Seals from the file: `SealSource::File` (and hashed on the device, CUDA) and
/// `SealSource::Reader` (streamed).
fn seal_from_file(
    r: &mut Report,
    mgr: &VramManager,
    device_mgr: Option<&VramManager>,
    req: &SealRequest,
    file: &std::path::Path,
    size: u64,
    limit: f64,
) -> Result<(), CliError> {
    let f = std::fs::File::open(file).map_err(|e| crate::exit::io_error(file, &e))?;
    let (sealed, sealf_s) = best(3, || mgr.seal(req, SealSource::file(&f)).map(drop));
    sealed?;
    r.line(
        "seal from file (SealSource::File)",
        size,
        sealf_s,
        Some(("limit", limit)),
    );
    if let Some(dm) = device_mgr {
        let (shard, s) = time(|| dm.seal(req, SealSource::file(&f)));
        drop(shard?);
        r.line(
            "seal from file, hashed on the device",
            size,
            s,
            Some(("limit", limit)),
        );
    }
    // Each streamed seal reads the file from its start.
    let (sealed, sealr_s) = best(3, || {
        let f = std::fs::File::open(file).map_err(|e| crate::exit::io_error(file, &e))?;
        mgr.seal(
            req,
            SealSource::Reader {
                reader: &mut &f,
                len: size,
            },
        )
        .map(drop)
        .map_err(CliError::from)
    });
    sealed?;
    r.line(
        "seal from file (SealSource::Reader, streamed)",
        size,
        sealr_s,
        Some(("limit", limit)),
    );
    Ok(())
}

/// Sampled verification: cost independent of model size (a 16 MiB shard
/// against a `big` one).
fn sampled_verify(
    r: &mut Report,
    mgr: &VramManager,
    req: &SealRequest,
    big: u64,
    json: bool,
) -> Result<(), CliError> {
    let policy = VerifyPolicy::Sampled { leaves: 16 };
    let mut sampled = Vec::new();
    for shard_size in [16u64 << 20, big] {
        let shard = mgr.seal(
            req,
            SealSource::Reader {
                reader: &mut SyntheticModel::new(7, shard_size),
                len: shard_size,
            },
        )?;
        let rounds = 20u32;
        let t = Instant::now();
        for _ in 0..rounds {
            mgr.verify_with(&shard, policy)?;
        }
        let per_call = t.elapsed().as_secs_f64() / f64::from(rounds);
        sampled.push((shard_size, per_call));
        if !json {
            println!(
                "  sampled:16 verify of a {:<10} shard        {:>8.3} ms per call",
                format_bytes(shard_size),
                per_call * 1e3
            );
        }
    }
    if let [(_, small), (_, large)] = sampled.as_slice() {
        let ratio = if *small > 0.0 { large / small } else { 0.0 };
        if !json {
            println!(
                "  sampled verify, large/small cost ratio       {ratio:>8.2}x (target within 2x)"
            );
        }
        r.rows
            .push(serde_json::json!({ "name": "sampled verify large/small", "ratio": ratio }));
    }
    Ok(())
}

/// Peak RSS of a separate `vram seal` of a `size`-byte file on `device`. On
/// the mock the model itself lives in host memory: the budget is the model
/// plus 64 MiB. On a real device only the figure is reported (staging buffers
/// plus the driver's own host memory, independent of the model size).
fn peak_rss_check(
    r: &mut Report,
    dir: &std::path::Path,
    size: u64,
    device: &str,
    json: bool,
) -> Result<(), CliError> {
    use std::io::Write;
    let file = dir.join("big-model.bin");
    let secret = dir.join("secret");
    {
        let mut f = std::fs::File::create(&file).map_err(|e| crate::exit::io_error(&file, &e))?;
        let mut src = SyntheticModel::new(9, size);
        let mut buf = vec![0u8; 16 << 20];
        loop {
            let n = src
                .read(&mut buf)
                .map_err(|e| CliError::env(e.to_string()))?;
            if n == 0 {
                break;
            }
            f.write_all(buf.get(..n).unwrap_or_default())
                .map_err(|e| crate::exit::io_error(&file, &e))?;
        }
    }
    let mut key = [0u8; 32];
    use ring::rand::SecureRandom;
    ring::rand::SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| CliError::env("random generator failed"))?;
    write_private(&secret, &key)?;
    let exe = std::env::current_exe().map_err(|e| CliError::env(e.to_string()))?;
    let out = Command::new(exe)
        .args([
            "seal",
            "--device",
            device,
            "--json",
            "--quiet",
            "--verify",
            "sampled:16",
            "--secret-file",
        ])
        .arg(&secret)
        .arg(&file)
        .output()
        .map_err(|e| CliError::env(format!("spawn vram seal: {e}")))?;
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(&secret);
    if !out.status.success() {
        return Err(CliError::env(format!(
            "child seal failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| CliError::env(format!("child seal output: {e}")))?;
    let peak = v
        .get("peak_rss_bytes")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    if device != "mock" {
        if !json {
            println!(
                "  peak RSS sealing a {} file on {device}     {:>10} (host: staging buffers and the driver)",
                format_bytes(size),
                format_bytes(peak),
            );
        }
        r.rows.push(serde_json::json!({ "name": format!("peak rss file seal ({device})"), "bytes": size, "peak_rss_bytes": peak }));
        return Ok(());
    }
    let budget = size.saturating_add(64 << 20);
    if !json {
        println!(
            "  peak RSS sealing a {} file on the mock     {:>10} (model + 64 MiB = {}; {})",
            format_bytes(size),
            format_bytes(peak),
            format_bytes(budget),
            if peak <= budget { "within" } else { "OVER" }
        );
    }
    r.rows.push(serde_json::json!({ "name": "peak rss file seal (mock)", "bytes": size, "peak_rss_bytes": peak, "budget_bytes": budget }));
    Ok(())
}

#[cfg(unix)]
fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<(), CliError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| crate::exit::io_error(path, &e))?;
    f.write_all(bytes)
        .map_err(|e| crate::exit::io_error(path, &e))
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<(), CliError> {
    std::fs::write(path, bytes).map_err(|e| crate::exit::io_error(path, &e))
}

/// Copies `size` bytes from one pinned staging buffer into a device buffer in
/// 64 MiB asynchronous copies and waits for them: the bare PCIe rate.
#[cfg(feature = "cuda")]
fn raw_pinned_copy(
    dev: &vram_core::cuda::CudaDevice,
    size: u64,
) -> Result<(f64, vram_core::cuda::CudaBuffer), CliError> {
    let env = |e: vram_core::DeviceError| CliError::env(format!("raw copy: {e}"));
    let chunk =
        usize::try_from(size.min(64 << 20)).map_err(|_| CliError::usage("size too large"))?;
    let mut buffer = dev.alloc_cuda(size).map_err(env)?;
    let mut staging = dev.alloc_pinned_staging(chunk).map_err(env)?;
    staging.as_mut_slice().map_err(env)?.fill(0xA5);
    let start = Instant::now();
    let mut offset = 0u64;
    while offset < size {
        let n = usize::try_from(size.saturating_sub(offset))
            .unwrap_or(chunk)
            .min(chunk);
        buffer
            .write_at_async_pinned(offset, &staging, n)
            .map_err(env)?;
        offset = offset.saturating_add(n as u64);
    }
    staging.wait().map_err(env)?;
    Ok((start.elapsed().as_secs_f64(), buffer))
}

/// The two ways a seal can move host bytes to the device, without hashing,
/// against the raw pinned rate: a plain `write_at` from pageable memory (the
/// driver stages it) and the pinned double-buffered pipeline a seal uses (one
/// thread copies each chunk into pinned memory, then the DMA runs). A seal
/// cannot beat the faster of the two plus its hashing.
#[cfg(feature = "cuda")]
fn upload_paths(
    r: &mut Report,
    dev: &vram_core::cuda::CudaDevice,
    data: &[u8],
    size: u64,
    raw_rate: f64,
) -> Result<(), CliError> {
    use vram_core::DeviceBuffer;
    let env = |what: &str, e: &dyn std::fmt::Display| CliError::env(format!("{what}: {e}"));
    let mut buffer = dev.alloc_cuda(size).map_err(|e| env("pageable copy", &e))?;
    let (written, secs) = time(|| -> Result<(), vram_core::DeviceError> {
        let mut offset = 0u64;
        for chunk in data.chunks(64 << 20) {
            buffer.write_at(offset, chunk)?;
            offset = offset.saturating_add(chunk.len() as u64);
        }
        Ok(())
    });
    written.map_err(|e| env("pageable copy", &e))?;
    r.line(
        "pageable copy (write_at), no hashing",
        size,
        secs,
        Some(("raw copy", raw_rate)),
    );
    let (direct, secs) = time(|| buffer.write_direct(0, data));
    match direct {
        Some(done) => {
            done.map_err(|e| env("direct copy", &e))?;
            r.line(
                "direct DMA from registered memory, no hashing",
                size,
                secs,
                Some(("raw copy", raw_rate)),
            );
        }
        None => {
            if !r.json {
                println!("  direct DMA: the driver would not register this memory");
            }
        }
    }
    let (written, secs) =
        time(|| buffer.pipelined_write(data, vram_residency::DEFAULT_STAGING_BYTES, |_| {}));
    written.map_err(|e| env("pinned pipeline", &e))?;
    r.line(
        "pinned pipeline (16 MiB staging), no hashing",
        size,
        secs,
        Some(("raw copy", raw_rate)),
    );
    Ok(())
}

/// On-device leaf hashing of the whole buffer at several leaf sizes (best of
/// 3 each, after one call that compiles the kernel): the kernel hashes one leaf
/// per thread, so fewer, larger leaves leave more of the GPU idle. These rows
/// are the evidence for choosing a leaf size on a GPU.
#[cfg(feature = "cuda")]
fn on_device_hash_rates(
    r: &mut Report,
    buffer: &vram_core::cuda::CudaBuffer,
    size: u64,
) -> Result<(), CliError> {
    use vram_core::{DeviceBuffer, DeviceError};
    use vram_crypto::LEAF_PREFIX;
    match buffer.hash_leaves_on_device(LEAF_PREFIX, 4096, 0, 1) {
        Ok(_) => {}
        Err(DeviceError::Unsupported { operation }) => {
            tracing::warn!("on-device leaf hashing unavailable: {operation}");
            return Ok(());
        }
        Err(e) => return Err(CliError::env(format!("on-device leaf hashing: {e}"))),
    }
    for leaf in [4u64 << 10, 64 << 10, 1 << 20] {
        let count = size.div_ceil(leaf);
        let (out, secs) = best(3, || {
            buffer.hash_leaves_on_device(LEAF_PREFIX, leaf, 0, count)
        });
        out.map_err(|e| CliError::env(format!("on-device leaf hashing: {e}")))?;
        r.line(
            &format!("on-device leaf hashing, leaf {}", format_bytes(leaf)),
            size,
            secs,
            None,
        );
    }
    Ok(())
}
