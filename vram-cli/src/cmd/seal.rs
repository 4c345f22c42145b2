//! `vram seal FILE...`: stream each file into device memory, seal, verify once.

use super::model_ref::file_model_ref;
use crate::cli::SealArgs;
use crate::exit::{io_error, shown_path, CliError};
use crate::figures::{gbps, peak_rss_bytes};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vram_audit::AuditSink;
use vram_residency::SealSource;
use vram_residency::{
    ScrubConfig, Scrubber, SealHashing, SealRequest, SealedShard, VerifyPolicy, VramError,
};
use vram_validation::{DigestForm, ExpectedDigest, ModelRef, OutputLine, Sha256Hex};
use vram_worker::{
    build_manager, hub, open_audit_log_with, DeviceSelection, ManagerOptions, ModelLocation,
    SecretSource,
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
    file_model_ref(&name).map_err(|e| {
        CliError::usage(format!(
            "{}: cannot derive a model reference from the file name ({e}); pass --model-ref",
            shown_path(path)
        ))
    })
}

/// Opens a model file (or snapshot directory) named on the command line,
/// following symlinks (a hub cache's snapshot links to its blobs), with
/// `O_NONBLOCK`: a FIFO named by mistake cannot hang the open before the
/// caller refuses it (the flag changes nothing for a regular file).
fn open_model_file(path: &std::path::Path) -> Result<std::fs::File, CliError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| io_error(path, &e))
}

/// What a file that is neither a regular file nor a directory is, for a
/// message.
fn kind_name(file_type: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else {
        "a special file"
    }
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

/// `vram seal`: plan (every input checked, nothing touched), execute (the
/// worker built, every input sealed and verified), report (the JSON
/// document, the hold, the releases).
pub(crate) fn run(args: &SealArgs, quiet: bool) -> Result<(), CliError> {
    let plan = plan(args, quiet)?;
    let sealed = execute(args, plan, quiet)?;
    report(args, sealed, quiet)
}

/// What `vram seal` will seal, every input checked before any device work.
struct SealPlan {
    /// Files sealed one shard each.
    inputs: Vec<Input>,
    /// A snapshot sealed as one model.
    snapshot: Option<SnapshotInput>,
    /// Whether the inputs come from a verified publisher signature.
    signed: bool,
}

/// Checks every input, flag and file before a device, a secret or a log is
/// touched.
fn plan(args: &SealArgs, quiet: bool) -> Result<SealPlan, CliError> {
    let scrub_rate = args.scrub_rate;
    if args.hold {
        // Checked now, not after every file is sealed.
        ScrubConfig::new(scrub_rate).validate().map_err(|_| {
            CliError::usage(format!(
                "--scrub-rate: {scrub_rate} B/s is below the minimum of {} (1MiB) per second",
                ScrubConfig::MIN_BYTES_PER_SECOND
            ))
        })?;
    }
    let expected = args.expect_sha256.clone();
    let model_ref_flag = args.model_ref.clone();
    // Check every file before touching a device.
    let mut inputs = Vec::with_capacity(args.files.len());
    let mut signed_model = None;
    if let (Some(signature), Some(key)) = (&args.model_signature, &args.public_key) {
        let [model_path] = args.files.as_slice() else {
            return Err(CliError::usage(
                "--model-signature applies to one model: a directory, or a single file",
            ));
        };
        if expected.is_some() {
            return Err(CliError::usage(
                "--expect-sha256 and --model-signature exclude each other: the signature gives every file's digest",
            ));
        }
        let plan = super::signed::plan(model_path, signature, key, model_ref_flag.as_ref())?;
        if !quiet {
            eprintln!(
                "vram: signature verified: {} ({} file(s), statement sha256:{}, publisher key sha256:{}); \
                 each file is checked against it as it is sealed",
                vram_validation::escape_for_log(plan.model.model_name(), 80),
                plan.model.resources().len(),
                vram_validation::hex::encode(&plan.model.statement_sha256()),
                vram_validation::hex::encode(&plan.model.publisher_key_sha256()),
            );
            for name in &plan.empty {
                eprintln!(
                    "vram: note: {}: empty, matches its signature; nothing to seal",
                    vram_validation::escape_for_log(name, 200)
                );
            }
        }
        for i in plan.inputs {
            inputs.push(Input {
                path: i.shown,
                file: i.file,
                len: i.len,
                model_ref: i.model_ref,
                expected: Some(i.expected),
                provenance: Some(i.provenance),
            });
        }
        signed_model = Some(plan.model);
    }
    let mut snapshot: Option<SnapshotInput> = None;
    for path in args.files.iter().filter(|_| signed_model.is_none()) {
        if let Some(model) = path.to_str().filter(|p| p.starts_with("hf://")) {
            if args.files.len() != 1 || expected.is_some() {
                return Err(CliError::usage(format!(
                    "{model}: a cached model is sealed on its own, as one model \
                     (without --expect-sha256: each blob's name gives its digest)"
                )));
            }
            // One GGUF file of a repository: sealed as a file, the SHA-256
            // its blob's name promises checked in the sealing pass; a part
            // of a split model: all its parts, as one model.
            let gguf = super::hub::gguf_file(model, args.cache_without_links)?;
            if let Some(super::hub::CachedGguf::Split(location)) = gguf {
                snapshot = Some(SnapshotInput {
                    shown: location.model_ref.as_str().to_owned(),
                    location,
                });
                continue;
            }
            if let Some(super::hub::CachedGguf::File(cached, reference, sha256)) = gguf {
                let model_ref = ModelRef::new(&reference).map_err(|e| {
                    CliError::usage(format!("{model}: not a model reference ({e})"))
                })?;
                inputs.push(Input {
                    file: open_model_file(&cached.path)?,
                    path: path.clone(),
                    len: cached.len,
                    model_ref,
                    expected: sha256,
                    provenance: None,
                });
                continue;
            }
            // Every file with an expected digest is checked, here or in the
            // reads that seal and bind it.
            let located = vram_worker::locate_in_cache(model, quiet, args.cache_without_links)?;
            snapshot = Some(SnapshotInput {
                shown: located.model_ref.as_str().to_owned(),
                location: located,
            });
            continue;
        }
        // A part of a split GGUF model (`NAME-0000i-of-0000N.gguf`, N > 1):
        // all its parts, found beside it, sealed as one model (as
        // `vram-serve --model` and `llama-server -m` take a part).
        if let Some(location) = split_part_location(path, args, model_ref_flag.as_ref())? {
            snapshot = Some(SnapshotInput {
                shown: path.to_string_lossy().into_owned(),
                location,
            });
            continue;
        }
        let file = open_model_file(path)?;
        let meta = file.metadata().map_err(|e| io_error(path, &e))?;
        if !meta.is_dir() && !meta.is_file() {
            return Err(CliError::usage(format!(
                "{}: is {}, not a regular file; seal a regular file (copy a stream into one first)",
                shown_path(path),
                kind_name(meta.file_type())
            )));
        }
        if meta.is_dir() {
            if args.files.len() != 1 || expected.is_some() {
                return Err(CliError::usage(format!(
                    "{}: a snapshot directory is sealed on its own, as one model \
                     (without --expect-sha256: --model-signature gives every file's digest)",
                    shown_path(path)
                )));
            }
            // A hub cache's snapshots/COMMIT is checked as hf:// is.
            if let Some(hub) = hub::snapshot_of_dir(path, args.cache_without_links)? {
                snapshot = Some(SnapshotInput {
                    shown: path.to_string_lossy().into_owned(),
                    location: ModelLocation::of_hub_snapshot(hub, quiet)?,
                });
                continue;
            }
            // Which files are the model, checked before any device work.
            vram_hub::ModelLayout::of_dir(path).map_err(|e| match e {
                vram_hub::HubError::Io { .. } => CliError::env(e.to_string()),
                _ => CliError::usage(e.to_string()),
            })?;
            let model_ref = dir_model_ref(path)?;
            snapshot = Some(SnapshotInput {
                shown: path.to_string_lossy().into_owned(),
                location: ModelLocation::directory(path, model_ref),
            });
            continue;
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
        inputs.push(Input {
            path: path.clone(),
            file,
            len: meta.len(),
            model_ref,
            expected: sha256,
            provenance: None,
        });
    }
    if let Some(expected) = &expected {
        let [input] = inputs.as_slice() else {
            return Err(CliError::usage(
                "--expect-sha256 applies to exactly one file",
            ));
        };
        check_expected_size(expected, &input.path, input.len)?;
    }

    Ok(SealPlan {
        inputs,
        snapshot,
        signed: signed_model.is_some(),
    })
}

/// The split GGUF model a part named on the command line belongs to, if
/// `path` names one (a file, not a directory, named
/// `NAME-0000i-of-0000N.gguf` with N > 1): all its parts, as one model,
/// under `--model-ref` or `file:NAME`.
///
/// # Errors
/// Usage: the part named with other files or with `--expect-sha256` (one
/// file's digest; `--model-signature` gives every part's), or a part
/// missing or extra beside it.
fn split_part_location(
    path: &std::path::Path,
    args: &SealArgs,
    model_ref_flag: Option<&ModelRef>,
) -> Result<Option<ModelLocation>, CliError> {
    let Some(base) = vram_hub::gguf_part_model(path) else {
        return Ok(None);
    };
    if args.files.len() != 1 || args.expect_sha256.is_some() {
        return Err(CliError::usage(format!(
            "{}: a part of a split GGUF model, sealed with its other parts as one model: \
             name one part (or the directory) alone, without --expect-sha256",
            shown_path(path)
        )));
    }
    let model_ref = match model_ref_flag {
        Some(r) => r.clone(),
        None => file_model_ref(&base).map_err(|e| {
            CliError::usage(format!(
                "{}: cannot derive a model reference from the file name ({e}); pass --model-ref",
                shown_path(path)
            ))
        })?,
    };
    ModelLocation::gguf_parts(path, model_ref)
        .map(Some)
        .map_err(CliError::from)
}

/// What was sealed, and the worker that holds it.
struct Sealed {
    mgr: vram_residency::VramManager,
    device_kind: &'static str,
    shards: Vec<Arc<SealedShard>>,
    rows: Vec<serde_json::Value>,
    model_json: Option<serde_json::Value>,
    metrics: MetricsOut,
}

/// Builds the worker (metrics endpoint first, then secret, audit log,
/// devices, manager) and seals and verifies every planned input. Under
/// `--json` a failure is reported in the command's document, with what was
/// sealed before it.
fn execute(args: &SealArgs, plan: SealPlan, quiet: bool) -> Result<Sealed, CliError> {
    let SealPlan {
        inputs,
        snapshot,
        signed,
    } = plan;
    let (spec, policy, leaf) = (args.device.device, args.verify, args.leaf_size);
    let model_ref_flag = args.model_ref.clone();
    // Bound before anything is sealed: a port in use is an error now.
    let metrics = MetricsOut::from_args(args)?;
    let secret = SecretSource::new(args.secret_file.clone()).load()?;
    let audit: Option<Arc<dyn AuditSink>> = match &args.audit_log {
        Some(p) => Some(open_audit_log_with(p, &secret, audit_tuning(args)?)?),
        None => {
            if !quiet {
                eprintln!("vram: note: no --audit-log given; audit records are kept in memory and lost at exit");
            }
            None
        }
    };
    let selection = DeviceSelection::select(spec)?;
    selection.announce(quiet);
    let hashing = if args.hash_on_device {
        SealHashing::ON_DEVICE
    } else {
        SealHashing::Host
    };
    let mgr = build_manager(
        secret,
        &selection,
        ManagerOptions {
            audit,
            leaf,
            hashing,
        },
    )?;

    let mut shards: Vec<Arc<SealedShard>> = Vec::new();
    let mut rows = Vec::new();
    let mut model_json = None;
    if let Some(input) = &snapshot {
        match seal_snapshot(
            &mgr,
            &selection,
            args,
            policy,
            input,
            model_ref_flag.clone(),
            quiet,
        ) {
            Ok((held, model_rows, model)) => {
                shards = held;
                rows = model_rows;
                model_json = Some(model);
            }
            Err(e) if args.json => {
                let out = serde_json::json!({
                    "shards": [],
                    "device_kind": selection.kind(),
                    "peak_rss_bytes": peak_rss_bytes(),
                    "error": e.to_json(),
                });
                println!("{out:#}");
                return Err(e.reported_in_json());
            }
            Err(e) => return Err(e),
        }
    }
    for input in inputs {
        let path = input.path.clone();
        match seal_one(&mgr, &selection, args, policy, input, quiet) {
            Ok((shard, row)) => {
                rows.push(row);
                shards.push(Arc::new(shard));
            }
            Err(mut e) => {
                if signed && e.code == crate::exit::INTEGRITY {
                    // Every shard sealed so far is released below (audited).
                    let base = e.message.trim_end_matches("; nothing was sealed");
                    e.message = format!(
                        "{base}: not the SHA-256 the publisher signed; nothing stays sealed \
                         (the {} file(s) sealed before it are released)",
                        shards.len()
                    );
                }
                if args.json {
                    // What was sealed (and audited) before the failure is
                    // still reported, with the failure (the error object of
                    // every `--json` command, plus the file), then released.
                    let mut error = e.to_json();
                    if let Some(obj) = error.as_object_mut() {
                        obj.insert("file".into(), path.to_string_lossy().into());
                    }
                    let out = serde_json::json!({
                        "shards": rows,
                        "device_kind": selection.kind(),
                        "peak_rss_bytes": peak_rss_bytes(),
                        "error": error,
                    });
                    println!("{out:#}");
                    return Err(e.reported_in_json());
                }
                return Err(e);
            }
        }
    }
    Ok(Sealed {
        mgr,
        device_kind: selection.kind(),
        shards,
        rows,
        model_json,
        metrics,
    })
}

/// The JSON document (or nothing more: each shard's line is out already),
/// then the hold, or the releases: exit 0 only once every record is durable.
fn report(args: &SealArgs, sealed: Sealed, quiet: bool) -> Result<(), CliError> {
    let Sealed {
        mgr,
        device_kind,
        shards,
        rows,
        model_json,
        metrics,
    } = sealed;
    let scrub_rate = args.scrub_rate;
    let mut out = serde_json::json!({
        "shards": rows,
        "device_kind": device_kind,
        "peak_rss_bytes": peak_rss_bytes(),
    });
    if let (Some(model), Some(obj)) = (model_json, out.as_object_mut()) {
        obj.insert("model".into(), model);
    }
    if args.hold {
        if args.json {
            println!("{out:#}");
        }
        // The document is out before holding (scripts need the handles): a
        // failure while holding is said on stderr only, never as a second
        // JSON document.
        return hold(&mgr, shards, scrub_rate, quiet, metrics, device_kind).map_err(|e| {
            if args.json {
                e.reported_in_json()
            } else {
                e
            }
        });
    }
    // Exit 0 only once every record, the releases' included, is durable.
    let mut released = Ok(());
    for shard in shards {
        if let Ok(shard) = Arc::try_unwrap(shard) {
            let r = shard.release();
            if released.is_ok() {
                released = r.map_err(CliError::from);
            }
        }
    }
    if args.json {
        if let (Err(e), Some(obj)) = (&released, out.as_object_mut()) {
            obj.insert("error".into(), e.to_json());
        }
        println!("{out:#}");
        released = released.map_err(CliError::reported_in_json);
    }
    released
}

/// One file to seal, checked before any device work.
struct Input {
    /// How messages and output name it.
    path: std::path::PathBuf,
    file: std::fs::File,
    len: u64,
    model_ref: ModelRef,
    /// The SHA-256 it must have, checked in the sealing pass.
    expected: Option<Sha256Hex>,
    /// The signed model it was checked against (seal format v3).
    provenance: Option<vram_residency::Provenance>,
}

/// Seals and verifies one file; prints its line unless `--json`; returns the
/// shard and its JSON row.
fn seal_one(
    mgr: &vram_residency::VramManager,
    selection: &DeviceSelection,
    args: &SealArgs,
    policy: VerifyPolicy,
    input: Input,
    quiet: bool,
) -> Result<(SealedShard, serde_json::Value), CliError> {
    let Input {
        path,
        file,
        len,
        model_ref,
        expected,
        provenance,
    } = input;
    let path = path.as_path();
    let mut req = SealRequest::new(model_ref, selection.target());
    req.expected_sha256 = expected;
    req.provenance = provenance;
    let bar = crate::progress::bar(len, "seal", quiet);
    let t0 = Instant::now();
    // A regular file is read by every core at once (positional reads);
    // anything else is streamed.
    let regular = file.metadata().is_ok_and(|m| m.is_file());
    let shard = if regular {
        mgr.seal(
            &req,
            SealSource::File {
                file: &file,
                progress: Some(&|n| bar.inc(n)),
            },
        )
    } else {
        mgr.seal(
            &req,
            SealSource::Reader {
                reader: &mut Progress {
                    inner: file,
                    bar: bar.clone(),
                },
                len,
            },
        )
    }
    .map_err(|e| file_error(path, e))?;
    let seal_secs = t0.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let row = verify_and_report(mgr, args, policy, path, &shard, Some(seal_secs))?;
    Ok((shard, row))
}

/// Verifies a freshly sealed shard with `policy`, prints its line unless
/// `--json`, and returns its JSON row. `seal_secs`: the time its seal took,
/// when it was sealed on its own.
fn verify_and_report(
    mgr: &vram_residency::VramManager,
    args: &SealArgs,
    policy: VerifyPolicy,
    path: &std::path::Path,
    shard: &SealedShard,
    seal_secs: Option<f64>,
) -> Result<serde_json::Value, CliError> {
    let len = shard.vram_bytes();
    let report = mgr
        .verify_with(shard, policy)
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
                "policy": policy_name(policy),
                "policy_run": ran,
                "leaves_checked": report.leaves_checked,
                "bytes_checked": report.bytes_checked,
                "seconds": verify_secs,
            },
            "seal_seconds": seal_secs,
            "seal_gb_per_s": seal_secs.map(|s| gbps(len, s)),
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
        let rate =
            seal_secs.map_or_else(String::new, |s| format!("  seal {:.2} GB/s", gbps(len, s)));
        let mut line = OutputLine::new();
        line.push("sealed ")
            .field(&path.to_string_lossy())
            .push(&format!(
            "  shard {}  {}:{}  {} bytes  digest {}  verify {verify} ok ({verify_secs:.3} s){rate}",
            h.shard_id,
            shard.device_kind().as_str(),
            h.gpu_device,
            h.vram_bytes,
            h.digest,
        ));
        println!("{line}");
    }
    Ok(row)
}

/// A snapshot to seal as one model, and how output names it (the directory,
/// or `hf://ORG/NAME@COMMIT`).
struct SnapshotInput {
    shown: String,
    location: ModelLocation,
}

/// `file:NAME` for a snapshot directory: its own name (a hub snapshot's is
/// its commit).
fn dir_model_ref(dir: &std::path::Path) -> Result<ModelRef, CliError> {
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "model".into());
    file_model_ref(&name).map_err(|e| {
        CliError::usage(format!(
            "{}: cannot derive a model reference from the directory name ({e}); pass --model-ref",
            shown_path(dir)
        ))
    })
}

/// A sealed snapshot's shards, their JSON rows, and the model's JSON object.
type SealedSnapshot = (
    Vec<Arc<SealedShard>>,
    Vec<serde_json::Value>,
    serde_json::Value,
);

/// `vram seal DIR`: the snapshot sealed as one model
/// ([`vram_residency::VramManager::seal_model`]): its weights as one set,
/// each shard verified and reported as a file is, its small files bound.
/// Returns the shards, their rows and the model's JSON object.
fn seal_snapshot(
    mgr: &vram_residency::VramManager,
    selection: &DeviceSelection,
    args: &SealArgs,
    policy: VerifyPolicy,
    input: &SnapshotInput,
    model_ref: Option<ModelRef>,
    quiet: bool,
) -> Result<SealedSnapshot, CliError> {
    let location = &input.location;
    let dir = location.dir.as_path();
    let shown = std::path::Path::new(&input.shown);
    let model_ref = model_ref.unwrap_or_else(|| location.model_ref.clone());
    let mut request = vram_residency::SnapshotRequest::new(dir, model_ref, selection.target());
    request.expected_sha256 = location.expected_sha256.clone();
    request.expected_files = location.expected_files.clone();
    // The parts of a split GGUF model named by one of them: those files
    // only, whatever else the directory holds.
    request.layout = location.layout.clone();
    let t0 = Instant::now();
    let model = mgr.seal_model(&request).map_err(|e| {
        // A cached file that is not what its blob is named by: say how to
        // fetch it again.
        let repair = match &e {
            VramError::ModelFileRejected { name, .. } => hub::repair_of(dir, name),
            _ => None,
        };
        let mut err = file_error(shown, e);
        if let Some(repair) = repair {
            err.message = format!("{}. To fetch it again: {repair}", err.message);
        }
        err
    })?;
    let seal_secs = t0.elapsed().as_secs_f64();
    let mut rows = Vec::with_capacity(model.shards().len());
    for ((shard, name), took) in model
        .shards()
        .iter()
        .zip(model.weight_files())
        .zip(model.shard_seal_times())
    {
        rows.push(verify_and_report(
            mgr,
            args,
            policy,
            &shown.join(name),
            shard,
            Some(took.as_secs_f64()),
        )?);
    }
    let files: Vec<serde_json::Value> = model
        .files()
        .iter()
        .map(|f| serde_json::json!({ "file": f.name, "bytes": f.bytes, "sha256": f.sha256 }))
        .collect();
    let json = serde_json::json!({
        "model_ref": model.model_ref().as_str(),
        "model": input.shown,
        "dir": dir.to_string_lossy(),
        "weights": model.weight_files(),
        "bound_files": files,
        "binding": model.binding_tag(),
        "vram_bytes": model.vram_bytes(),
        "seal_seconds": seal_secs,
        "seal_gb_per_s": gbps(model.vram_bytes(), seal_secs),
    });
    if !args.json {
        let mut line = OutputLine::new();
        line.push("model ").field(&input.shown);
        // The reference once: `hf://` input is its own reference.
        if model.model_ref().as_str() != input.shown {
            line.push("  ").field(model.model_ref().as_str());
        }
        line.push(&format!(
            "  {} shard(s)  {} bytes  sealed in {seal_secs:.3} s ({:.2} GB/s)  binding {}",
            model.shards().len(),
            model.vram_bytes(),
            gbps(model.vram_bytes(), seal_secs),
            model.binding_tag()
        ));
        println!("{line}");
        for f in model.files() {
            let mut line = OutputLine::new();
            line.push("  bound ")
                .field(&f.name)
                .push(&format!("  {} bytes  sha256 {}", f.bytes, f.sha256));
            println!("{line}");
        }
    }
    if !quiet && !args.json {
        eprintln!(
            "vram: the small files above are bound to the seals: a program serving this model \
             reads them through the library (VramManager::model_file), which refuses a changed one"
        );
    }
    Ok((model.into_shards(), rows, json))
}

/// Where `--hold` publishes its metrics.
struct MetricsOut {
    listener: Option<crate::metrics::Listener>,
    file: Option<(crate::metrics::TextFile, Duration)>,
}

impl MetricsOut {
    /// Checks the flags and binds the listener before anything is sealed.
    fn from_args(args: &SealArgs) -> Result<Self, CliError> {
        let listener = args
            .metrics_listen
            .as_deref()
            .map(crate::metrics::Listener::bind)
            .transpose()?;
        let file = match &args.metrics_file {
            Some(p) => Some((crate::metrics::TextFile::new(p)?, args.metrics_interval)),
            None => None,
        };
        Ok(Self { listener, file })
    }
}

/// Everything the metrics report, read now.
fn snapshot(
    mgr: &vram_residency::VramManager,
    shards: &[Arc<SealedShard>],
    scrub: vram_residency::ScrubStats,
    device_kind: &'static str,
) -> crate::metrics::HoldSnapshot {
    crate::metrics::HoldSnapshot {
        shards: shards.len() as u64,
        bytes: shards
            .iter()
            .fold(0u64, |n, s| n.saturating_add(s.vram_bytes())),
        compromised: shards.iter().filter(|s| s.is_compromised()).count() as u64,
        device_kind,
        manager: mgr.metrics(),
        scrub,
        audit: mgr.audit_sink().stats(),
    }
}

/// Keeps the shards resident and scrubbing until SIGINT/SIGTERM, or until a
/// held shard is found compromised; then releases them (each release is
/// audited). A compromise is an integrity error (exit 1), reported at once.
fn hold(
    mgr: &vram_residency::VramManager,
    shards: Vec<Arc<SealedShard>>,
    rate: u64,
    quiet: bool,
    metrics: MetricsOut,
    device_kind: &'static str,
) -> Result<(), CliError> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .map_err(|e| CliError::env(format!("cannot install signal handler: {e}")))?;
    hold_until(mgr, shards, rate, quiet, &metrics, device_kind, &stop)
}

/// [`hold`] until `stop` is set.
fn hold_until(
    mgr: &vram_residency::VramManager,
    shards: Vec<Arc<SealedShard>>,
    rate: u64,
    quiet: bool,
    metrics: &MetricsOut,
    device_kind: &'static str,
    stop: &AtomicBool,
) -> Result<(), CliError> {
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
    // The listener thread only reads; it stops with the hold loop.
    let listener_stop = AtomicBool::new(false);
    let compromised = std::thread::scope(|scope| -> Result<bool, CliError> {
        if let Some(listener) = &metrics.listener {
            // Said even with -q: with port 0 it is the only way to learn it.
            eprintln!("vram: metrics at http://{}/metrics", listener.addr);
            let (listener_stop, shards, scrubber) = (&listener_stop, &shards, &scrubber);
            std::thread::Builder::new()
                .name("vram-metrics".into())
                .spawn_scoped(scope, move || {
                    listener.serve(listener_stop, &|| {
                        snapshot(mgr, shards, scrubber.stats(), device_kind)
                    });
                })
                .map_err(|e| CliError::env(format!("cannot start the metrics listener: {e}")))?;
        }
        let mut next_write = Instant::now();
        let compromised = loop {
            if let Some((file, every)) = &metrics.file {
                if Instant::now() >= next_write {
                    // A failed write is said, not fatal: the shards stay guarded.
                    if let Err(e) =
                        file.write(&snapshot(mgr, &shards, scrubber.stats(), device_kind))
                    {
                        tracing::warn!("{}", e.message);
                    }
                    next_write = Instant::now().checked_add(*every).unwrap_or(next_write);
                }
            }
            if failed.load(Ordering::SeqCst) && shards.iter().any(|s| s.is_compromised()) {
                break true;
            }
            if stop.load(Ordering::SeqCst) {
                break false;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        listener_stop.store(true, Ordering::SeqCst);
        Ok(compromised)
    })?;
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
    // Written once more after the release: a collector reading the file
    // after the service stopped sees nothing held.
    if let Some((file, _)) = &metrics.file {
        if let Err(e) = file.write(&snapshot(mgr, &[], stats, device_kind)) {
            tracing::warn!("{}", e.message);
        }
    }
    if !quiet {
        eprintln!(
            "vram: released; scrubbed {} bytes in {} sweep(s), {} failure(s)",
            stats.bytes_scrubbed, stats.sweeps, stats.failures
        );
    }
    if compromised {
        return Err(CliError::integrity(
            "a held shard was found compromised (audited); every shard was released",
        ));
    }
    if failed.load(Ordering::SeqCst) {
        return Err(CliError::integrity("scrubbing found corrupt device memory"));
    }
    Ok(released?)
}

/// The audit log's segment size and checkpoint cadence from the flags.
fn audit_tuning(args: &SealArgs) -> Result<vram_audit::FileOptions, CliError> {
    let mut options = vram_audit::FileOptions::default();
    if let Some(bytes) = args.audit_segment_size {
        if bytes == 0 {
            return Err(CliError::usage(
                "--audit-segment-size must be at least 1 byte",
            ));
        }
        options.max_file_bytes = Some(bytes);
    }
    options.checkpoint_records = args.audit_checkpoint_records;
    options.checkpoint_interval = args.audit_checkpoint_interval;
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vram_mock::MockDevice;
    use vram_residency::{VramConfig, VramManager};
    use vram_secrets::WorkerSecret;

    fn manager(device: &Arc<MockDevice>) -> VramManager {
        let secret = WorkerSecret::from_bytes(zeroize::Zeroizing::new(vec![7u8; 32])).unwrap();
        let device: Arc<dyn vram_core::Device> = device.clone();
        VramManager::new(VramConfig::builder(secret).device(device).build()).unwrap()
    }

    const NO_METRICS: MetricsOut = MetricsOut {
        listener: None,
        file: None,
    };

    /// The health contract of `--hold`: a compromise ends the hold with an
    /// integrity error (exit 1) without anyone asking it to stop, after the
    /// failure is audited and every shard released.
    #[test]
    fn a_compromised_shard_ends_the_hold_with_an_integrity_error() {
        let device = MockDevice::new(0, 64 << 20);
        let mgr = manager(&device);
        let shard = mgr
            .seal(
                &SealRequest::inline(0).unwrap(),
                SealSource::Bytes(&vec![5u8; 3 << 20]),
            )
            .unwrap();
        let buffer = *device.live_buffers().first().unwrap();
        let stop = AtomicBool::new(false);
        let result = std::thread::scope(|s| {
            let held = s.spawn(|| {
                hold_until(
                    &mgr,
                    vec![Arc::new(shard)],
                    1 << 30,
                    true,
                    &NO_METRICS,
                    "mock",
                    &stop,
                )
            });
            device.flip_bit(buffer, 1_000_000, 3).unwrap();
            // Only a hold that never notices runs into this.
            let deadline = Instant::now() + Duration::from_secs(60);
            while !held.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            stop.store(true, Ordering::SeqCst);
            held.join().unwrap()
        });
        let e = result.unwrap_err();
        assert_eq!(e.code, crate::exit::INTEGRITY, "{}", e.message);
        assert!(e.message.contains("compromised"), "{}", e.message);
        assert_eq!(device.live_allocations(), 0, "every shard released");
        let m = mgr.metrics();
        assert!(m.verifications_failed >= 1, "{m:?}");
        let audited = mgr.audit_sink().stats().records;
        assert!(audited >= 3, "seal, failure and release audited: {audited}");
    }

    #[test]
    fn an_intact_hold_ends_cleanly_when_asked() {
        let device = MockDevice::new(0, 64 << 20);
        let mgr = manager(&device);
        let shard = mgr
            .seal(
                &SealRequest::inline(0).unwrap(),
                SealSource::Bytes(&vec![6u8; 1 << 20]),
            )
            .unwrap();
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let held = s.spawn(|| {
                hold_until(
                    &mgr,
                    vec![Arc::new(shard)],
                    1 << 30,
                    true,
                    &NO_METRICS,
                    "mock",
                    &stop,
                )
            });
            std::thread::sleep(Duration::from_millis(300));
            stop.store(true, Ordering::SeqCst);
            held.join().unwrap().unwrap();
        });
        assert_eq!(device.live_allocations(), 0);
    }
}
