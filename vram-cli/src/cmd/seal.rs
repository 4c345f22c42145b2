//! `vram seal FILE...`: stream each file into device memory, seal, verify once.

use super::{gbps, leaf_arg, manager, open_audit, peak_rss_bytes, size_arg, verify_arg};
use crate::cli::SealArgs;
use crate::devices::{parse_spec, select};
use crate::exit::{io_error, shown_path, CliError};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vram_residency::vram_audit::AuditSink;
use vram_residency::vram_validation::{
    DigestForm, ExpectedDigest, ModelRef, OutputLine, Sha256Hex,
};
use vram_residency::{
    ScrubConfig, Scrubber, SealHashing, SealRequest, SealedShard, VerifyPolicy, VramError,
};

/// Counts bytes through a reader into a progress bar.
struct Progress<R> {
    inner: R,
    bar: indicatif::ProgressBar,
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

fn default_model_ref(path: &std::path::Path) -> Result<ModelRef, CliError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    ModelRef::new(&format!("file:{name}")).map_err(|e| {
        CliError::usage(format!(
            "{}: cannot derive a model reference from the file name ({e}); pass --model-ref",
            shown_path(path)
        ))
    })
}

/// The longest file `--expect-sha256 @PATH` reads (pointer files and
/// descriptors are a few hundred bytes).
const MAX_DIGEST_FILE_BYTES: u64 = 64 * 1024;

/// `--expect-sha256 VALUE` or `--expect-sha256 @PATH`.
fn expected_arg(value: &str) -> Result<ExpectedDigest, CliError> {
    let Some(path) = value.strip_prefix('@') else {
        return ExpectedDigest::parse(value)
            .map_err(|e| CliError::usage(format!("--expect-sha256: {e}")));
    };
    let path = std::path::Path::new(path);
    let file = std::fs::File::open(path).map_err(|e| {
        let mut err = io_error(path, &e);
        err.message = format!("--expect-sha256 @{}", err.message);
        err
    })?;
    let mut text = String::new();
    file.take(MAX_DIGEST_FILE_BYTES.saturating_add(1))
        .read_to_string(&mut text)
        .map_err(|e| {
            CliError::usage(format!(
                "--expect-sha256 @{}: cannot be read as text ({e})",
                shown_path(path)
            ))
        })?;
    if text.len() as u64 > MAX_DIGEST_FILE_BYTES {
        return Err(CliError::usage(format!(
            "--expect-sha256 @{}: is larger than {MAX_DIGEST_FILE_BYTES} bytes; expected a pointer file, a sha256sum line or an OCI descriptor",
            shown_path(path)
        )));
    }
    ExpectedDigest::parse_file(&text)
        .map_err(|e| CliError::usage(format!("--expect-sha256 @{}: {e}", shown_path(path))))
}

/// A size stated next to the expected digest (an LFS pointer, an OCI
/// descriptor) must be the file's: a different size is a different file
/// (exit 1, like a digest mismatch), found before anything is sealed.
fn check_expected_size(
    expected: &ExpectedDigest,
    path: &std::path::Path,
    len: u64,
) -> Result<(), CliError> {
    match expected.size {
        Some(size) if size != len => Err(CliError::integrity(format!(
            "{}: is {len} bytes, but the {} given to --expect-sha256 says {size} bytes",
            shown_path(path),
            match expected.form {
                DigestForm::LfsPointer => "LFS pointer",
                DigestForm::OciDescriptor => "OCI descriptor",
                _ => "digest",
            }
        ))),
        _ => Ok(()),
    }
}

/// A failure while sealing or verifying one file: the message names it.
fn file_error(path: &std::path::Path, e: VramError) -> CliError {
    let mut err = CliError::from(e);
    err.message = format!("{}: {}", shown_path(path), err.message);
    err
}

/// The name of the policy that ran, for output.
fn policy_name(p: VerifyPolicy) -> String {
    match p {
        VerifyPolicy::Sampled { leaves } => format!("sampled:{leaves}"),
        VerifyPolicy::FullHostReadback => "full_host_readback".into(),
        _ => "full".into(),
    }
}

pub(crate) fn run(args: &SealArgs, quiet: bool) -> Result<(), CliError> {
    let spec = parse_spec(&args.device.device)?;
    let policy = verify_arg(&args.verify)?;
    let leaf = leaf_arg(args.leaf_size.as_deref())?;
    let scrub_rate = size_arg("--scrub-rate", &args.scrub_rate)?;
    if args.hold {
        // Checked now, not after every file is sealed.
        ScrubConfig::new(scrub_rate).validate().map_err(|_| {
            CliError::usage(format!(
                "--scrub-rate: {scrub_rate} B/s is below the minimum of {} (1MiB) per second",
                ScrubConfig::MIN_BYTES_PER_SECOND
            ))
        })?;
    }
    let expected = args
        .expect_sha256
        .as_deref()
        .map(expected_arg)
        .transpose()?;
    let model_ref_flag = args
        .model_ref
        .as_deref()
        .map(ModelRef::new)
        .transpose()
        .map_err(|e| CliError::usage(format!("--model-ref: {e}")))?;
    // Check every file before touching a device.
    let mut inputs = Vec::with_capacity(args.files.len());
    for path in &args.files {
        if let Some(model) = path.to_str().filter(|p| p.starts_with("hf://")) {
            for h in super::hub::seal_inputs(model, quiet)? {
                let model_ref = model_ref_flag.clone().unwrap_or(h.model_ref);
                inputs.push((h.shown, h.file, h.len, model_ref, h.expected));
            }
            continue;
        }
        let file = std::fs::File::open(path).map_err(|e| io_error(path, &e))?;
        let meta = file.metadata().map_err(|e| io_error(path, &e))?;
        if meta.is_dir() {
            return Err(CliError::usage(format!(
                "{}: is a directory",
                shown_path(path)
            )));
        }
        if meta.len() == 0 {
            return Err(CliError::usage(format!(
                "{}: is empty; there is nothing to seal",
                shown_path(path)
            )));
        }
        let model_ref = match &model_ref_flag {
            Some(r) => r.clone(),
            None => default_model_ref(path)?,
        };
        let sha256 = expected.as_ref().map(|e| e.sha256.clone());
        inputs.push((path.clone(), file, meta.len(), model_ref, sha256));
    }
    if let Some(expected) = &expected {
        let [(path, _, len, _, _)] = inputs.as_slice() else {
            return Err(CliError::usage(
                "--expect-sha256 applies to exactly one file",
            ));
        };
        check_expected_size(expected, path, *len)?;
    }

    let secret = crate::secret::load(args.secret_file.as_deref())?;
    let audit: Option<Arc<dyn AuditSink>> = match &args.audit_log {
        Some(p) => Some(open_audit(p, &secret)?),
        None => {
            if !quiet {
                eprintln!("vram: note: no --audit-log given; audit records are kept in memory and lost at exit");
            }
            None
        }
    };
    let selection = select(spec)?;
    selection.announce(quiet);
    let hashing = if args.hash_on_device {
        SealHashing::ON_DEVICE
    } else {
        SealHashing::Host
    };
    let mgr = manager(secret, &selection, audit, leaf, hashing)?;

    let mut shards: Vec<SealedShard> = Vec::new();
    let mut rows = Vec::new();
    for (path, file, len, model_ref, expected) in inputs {
        match seal_one(
            &mgr, &selection, args, policy, expected, &path, file, len, model_ref, quiet,
        ) {
            Ok((shard, row)) => {
                rows.push(row);
                shards.push(shard);
            }
            Err(e) => {
                if args.json {
                    // What was sealed (and audited) before the failure is
                    // still reported, with the failure, then released.
                    let out = serde_json::json!({
                        "shards": rows,
                        "device_kind": selection.kind(),
                        "peak_rss_bytes": peak_rss_bytes(),
                        "error": {
                            "file": path.to_string_lossy(),
                            "message": e.message,
                            "exit_code": e.code,
                        },
                    });
                    println!("{out:#}");
                }
                return Err(e);
            }
        }
    }
    if args.json {
        let out = serde_json::json!({
            "shards": rows,
            "device_kind": selection.kind(),
            "peak_rss_bytes": peak_rss_bytes(),
        });
        println!("{out:#}");
    }
    if args.hold {
        hold(&mgr, shards, scrub_rate, quiet)?;
    } else {
        // Exit 0 only once every record, the releases' included, is durable.
        for shard in shards {
            shard.release()?;
        }
    }
    Ok(())
}

/// Seals and verifies one file; prints its line unless `--json`; returns the
/// shard and its JSON row.
#[allow(clippy::too_many_arguments)]
fn seal_one(
    mgr: &vram_residency::VramManager,
    selection: &crate::devices::Selection,
    args: &SealArgs,
    policy: VerifyPolicy,
    expected: Option<Sha256Hex>,
    path: &std::path::Path,
    file: std::fs::File,
    len: u64,
    model_ref: ModelRef,
    quiet: bool,
) -> Result<(SealedShard, serde_json::Value), CliError> {
    let mut req = SealRequest::new(model_ref, selection.target);
    req.expected_sha256 = expected;
    let bar = crate::progress::bar(len, "seal", quiet);
    let t0 = Instant::now();
    // A regular file is read by every core at once (positional reads);
    // anything else is streamed.
    let regular = file.metadata().is_ok_and(|m| m.is_file());
    let shard = if regular {
        mgr.seal_file_with_progress(&req, &file, &|n| bar.inc(n))
    } else {
        mgr.seal_reader(
            &req,
            Progress {
                inner: file,
                bar: bar.clone(),
            },
            len,
        )
    }
    .map_err(|e| file_error(path, e))?;
    let seal_secs = t0.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let report = mgr
        .verify_with(&shard, policy)
        .map_err(|e| file_error(path, e))?;
    let verify_secs = report.elapsed.as_secs_f64();
    let ran = policy_name(report.policy);
    let capped = report.policy != policy;
    let h = shard.handle();
    // The handle as serde writes it (sealed_at as a string, safe in jq),
    // plus what this command measured.
    let mut row = serde_json::to_value(&h)
        .map_err(|e| CliError::env(format!("could not serialize a handle: {e}")))?;
    if let Some(obj) = row.as_object_mut() {
        let extra = serde_json::json!({
            "file": path.to_string_lossy(),
            "device_kind": shard.device_kind().as_str(),
            "sha256": shard.plain_sha256().map(ToString::to_string),
            "verify": {
                "policy": args.verify,
                "policy_run": ran,
                "leaves_checked": report.leaves_checked,
                "bytes_checked": report.bytes_checked,
                "seconds": verify_secs,
            },
            "seal_seconds": seal_secs,
            "seal_gb_per_s": gbps(len, seal_secs),
        });
        if let serde_json::Value::Object(extra) = extra {
            obj.extend(extra);
        }
    }
    if !args.json {
        let verify = if capped {
            format!(
                "{} covers all {} leaves: full verification",
                policy_name(policy),
                report.leaves_checked
            )
        } else {
            ran
        };
        let mut line = OutputLine::new();
        line.push("sealed ")
            .field(&path.to_string_lossy())
            .push(&format!(
                "  shard {}  {}:{}  {} bytes  digest {}  verify {verify} ok ({verify_secs:.3} s)  seal {:.2} GB/s",
                h.shard_id,
                shard.device_kind().as_str(),
                h.gpu_device,
                h.vram_bytes,
                h.digest,
                gbps(len, seal_secs)
            ));
        println!("{line}");
    }
    Ok((shard, row))
}

/// Keeps the shards resident and scrubbing until SIGINT/SIGTERM, then releases
/// them (each release is audited).
fn hold(
    mgr: &vram_residency::VramManager,
    shards: Vec<SealedShard>,
    rate: u64,
    quiet: bool,
) -> Result<(), CliError> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .map_err(|e| CliError::env(format!("cannot install signal handler: {e}")))?;
    let shards: Vec<Arc<SealedShard>> = shards.into_iter().map(Arc::new).collect();
    let failed = Arc::new(AtomicBool::new(false));
    let failed_cb = Arc::clone(&failed);
    let mut config = ScrubConfig::new(rate);
    config.on_failure = Some(Box::new(move |e| {
        failed_cb.store(true, Ordering::SeqCst);
        eprintln!("vram: SCRUB FAILURE: {e}");
    }));
    let scrubber = Scrubber::start(mgr, &shards, config)?;
    if !quiet {
        eprintln!(
            "vram: holding {} shard(s), scrubbing at {} B/s; Ctrl-C or SIGTERM to release",
            shards.len(),
            rate
        );
    }
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let stats = scrubber.stop();
    // Each release is audited; the first that could not be is reported below.
    let mut released = Ok(());
    for shard in shards {
        if let Ok(shard) = Arc::try_unwrap(shard) {
            let r = shard.release();
            if released.is_ok() {
                released = r;
            }
        }
    }
    if !quiet {
        eprintln!(
            "vram: released; scrubbed {} bytes in {} sweep(s), {} failure(s)",
            stats.bytes_scrubbed, stats.sweeps, stats.failures
        );
    }
    if failed.load(Ordering::SeqCst) {
        return Err(CliError::integrity("scrubbing found corrupt device memory"));
    }
    Ok(released?)
}
