//! `vram-embed --model DIR`: sentence embeddings for JSON lines on standard
//! input, one JSON line per request on standard output.

// The binary's output channel is standard output; diagnostics go to stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use vram_embed::{
    serve, EmbedError, Embedder, LeasedWeights, ModelSnapshot, SafetensorsFile, SealedWeights,
    WeightsProvider,
};
use vram_residency::LeasePolicy;
use vram_worker::{
    locate, DeviceSpec, SecretChoice, SecretSource, StandardInput, Worker, WorkerError,
    WorkerOptions,
};

/// Exit code of a command line clap refuses (as `vram`'s).
const USAGE: u8 = 2;
/// Exit code of an environment failure (as `vram`'s).
const ENVIRONMENT: u8 = 3;

/// Serve sentence embeddings from a sentence-transformers snapshot sealed in
/// device memory.
///
/// The snapshot is sealed on the device first as one model: its weights
/// (`model.safetensors`, or the shards `model.safetensors.index.json` names;
/// from the hub cache, with the SHA-256 each blob name promises checked in
/// the same pass) in device memory, its config, tokenizer and pooling files
/// bound to those seals and read back only as sealed. Every request then
/// computes on weights taken from a verified lease obtained for it
/// (`--lease`), never from the files. A refused lease (a corrupt tensor,
/// named) ends serving.
///
/// Reads one request per line on standard input, `{"text": "..."}`, and
/// writes one line per request on standard output: `{"embedding": [...],
/// "lease": {...}}` or `{"error": {"code": N, "class": "...", "message":
/// "..."}}`. A malformed request gets an error and serving goes on.
///
/// Exit codes: 0 input ended; 1 the weights failed (a refused lease, a
/// digest mismatch, a missing tensor); 2 usage (bad arguments, invalid
/// snapshot files); 3 environment (device, secret, audit log, I/O).
#[derive(Debug, Parser)]
#[command(name = "vram-embed", version)]
struct Cli {
    /// The model: a snapshot directory (modules.json, config.json,
    /// tokenizer.json, 1_Pooling/config.json, model.safetensors or the
    /// shards of model.safetensors.index.json) or
    /// hf://ORG/NAME[@REVISION] in the local Hugging Face cache (offline).
    #[arg(long, value_name = "DIR|hf://ORG/NAME")]
    model: String,
    /// Device: auto (CUDA, else the mock, announced), mock, cuda, cuda:N.
    /// The embedder reads host bytes of its lease: a CUDA device is refused
    /// at start (exit 3).
    #[arg(long, default_value = "auto", value_name = "DEVICE")]
    device: String,
    /// Worker secret file; else the systemd credential `vram-worker-secret`
    /// or $VRAM_SECRET_FILE; else an ephemeral secret. Not `-` (or
    /// /dev/stdin): standard input carries the requests.
    #[arg(long, value_name = "PATH")]
    secret_file: Option<PathBuf>,
    /// Audit log (JSON lines, fail-closed) for the seal, refused leases and
    /// the tally of granted ones; needs the worker secret.
    #[arg(long, value_name = "PATH")]
    audit_log: Option<PathBuf>,
    /// What each request's lease verifies: sampled:K (K random leaves and
    /// the seal), full, or recent:SECONDS:K (a full verification no older
    /// than SECONDS, plus K leaves). The default, sampled:1 at 64 KiB
    /// leaves, keeps the verification near 0.6% of a request on
    /// all-MiniLM-L6-v2 (1,387 leaves: a corrupt leaf is found within 100
    /// requests with p = 7%, within a minute of back-to-back serving with
    /// p = 99%); sampled:16 finds it as often as sampled:1 at 1 MiB leaves
    /// (p = 1.15% a request) for about half the hashing.
    #[arg(long, default_value = "sampled:1", value_name = "POLICY")]
    lease: LeasePolicy,
    /// Leaf size of the seal (a power of two, 4 KiB to 1 GiB): what a
    /// sampled:K lease re-reads K of per request. 64 KiB on every device.
    #[arg(long, default_value = "64KiB", value_parser = vram_worker::parse_leaf_size, value_name = "BYTES")]
    leaf_size: vram_residency::LeafSize,
    /// Serve from the file read into host memory, unsealed and unverified
    /// (for comparisons only).
    #[arg(long)]
    unsealed: bool,
    /// More diagnostics on stderr (-v: info, -vv: per-request timings).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Errors only on stderr.
    #[arg(short, long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            if !e.use_stderr() {
                return ExitCode::SUCCESS;
            }
            // Standard output is a JSON channel: the error goes there too.
            let json = serde_json::json!({ "error": {
                "code": USAGE, "class": "usage",
                "message": clap_error_message(&e),
            }});
            println!("{json}");
            return ExitCode::from(USAGE);
        }
    };
    init_tracing(cli.verbose, cli.quiet);
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { error, reported }) => {
            eprintln!("vram-embed: error: {error}");
            if !reported {
                println!("{}", serde_json::json!({ "error": error.to_json() }));
            }
            ExitCode::from(error.class().exit_code())
        }
    }
}

/// An error that ends the process; `reported` when its response line is
/// already on standard output.
struct Failure {
    error: EmbedError,
    reported: bool,
}

impl From<EmbedError> for Failure {
    fn from(error: EmbedError) -> Self {
        Self {
            error,
            reported: false,
        }
    }
}

/// Where the operator's secret comes from: never standard input, which
/// carries the requests.
fn secret_source(cli: &Cli) -> SecretSource {
    SecretSource {
        file: cli.secret_file.clone(),
        standard_input: StandardInput::Refused,
    }
}

/// The worker secret: the operator's; without one, and without an audit log
/// that would need it, an ephemeral secret, said on stderr.
fn secret_choice(cli: &Cli) -> Result<SecretChoice, WorkerError> {
    let source = secret_source(cli);
    if source.is_configured() {
        return Ok(SecretChoice::Operator(source));
    }
    if cli.audit_log.is_some() {
        return Err(WorkerError::AuditNeedsSecret);
    }
    if !cli.quiet {
        eprintln!("note: no worker secret given: an ephemeral one seals for this process only");
    }
    Ok(SecretChoice::Ephemeral)
}

fn run(cli: &Cli) -> Result<(), Failure> {
    // Refused before anything else is looked at.
    secret_source(cli)
        .check_standard_input()
        .map_err(worker_error)?;
    let location = locate(&cli.model, cli.quiet).map_err(worker_error)?;
    if cli.unsealed {
        if !location.weights.is_file() {
            return Err(EmbedError::Snapshot {
                file: vram_embed::WEIGHTS_FILE.to_owned(),
                reason: "is missing: --unsealed serves single-file snapshots only".to_owned(),
            }
            .into());
        }
        let snapshot = ModelSnapshot::open(&location.dir)?;
        let embedder = Embedder::new(&snapshot)?;
        let file = SafetensorsFile::read(&location.weights)?;
        tracing::warn!(
            bytes = file.len(),
            "weights served from host memory, unsealed and unverified"
        );
        return serve_stdio(&embedder, &file);
    }
    let device = DeviceSpec::parse(&cli.device).map_err(worker_error)?;
    let secret = secret_choice(cli).map_err(worker_error)?;
    let worker = Worker::open_with_leaf_size(
        &WorkerOptions {
            device,
            secret,
            audit_log: cli.audit_log.clone(),
            quiet: cli.quiet,
        },
        Some(cli.leaf_size),
    )
    .map_err(worker_error)?;
    // Where the embedder computes, decided before anything is sealed: the
    // CPU over the mock's host memory; on CUDA, candle's CUDA device on the
    // sealing device (feature `cuda-engine`, its libraries checked here), so
    // a host that cannot run it is refused at start, never at a request.
    let compute = compute_device(&worker)?;
    let model = worker.seal_snapshot(&location).map_err(worker_error)?;
    tracing::info!(
        model = %location.model_ref,
        bytes = model.vram_bytes(),
        shards = model.shards().len(),
        bound_files = model.files().len(),
        device = worker.device_kind(),
        lease = %cli.lease,
        "sealed; serving"
    );
    let weights = SealedWeights::new(worker.manager().clone(), model, cli.lease);
    let served = prepare_and_serve(&weights, compute);
    let released = weights.release();
    served?;
    Ok(released?)
}

/// The device the embedder computes on for `worker`'s device: the CPU for
/// the mock; candle's CUDA device on the sealing device with the
/// `cuda-engine` feature; refused (exit 3) on CUDA without it.
fn compute_device(worker: &Worker) -> Result<candle_core::Device, Failure> {
    match worker.device_kind() {
        "mock" => Ok(candle_core::Device::Cpu),
        #[cfg(feature = "cuda-engine")]
        "cuda" => Ok(vram_embed::cuda_device(worker.devices().target())?),
        other => Err(EmbedError::Worker {
            reason: format!(
                "the BERT embedder cannot run on {other}: this build computes on the CPU from \
                 host bytes of the leased weights, which a device-memory lease does not give; \
                 serve it with --device mock, or build vram-embed with --features cuda-engine \
                 (cargo xtask gpu)"
            ),
            code: ENVIRONMENT,
        }
        .into()),
    }
}

/// The small files as sealed, then once, before the first request, every
/// leaf and the tensor tables read from the seal-checked headers (weights
/// that are not usable safetensors stop here, not at the first request);
/// then serving.
fn prepare_and_serve(weights: &SealedWeights, compute: candle_core::Device) -> Result<(), Failure> {
    let snapshot = weights.snapshot()?;
    let embedder = Embedder::on(&snapshot, compute)?;
    let micros = LeasedWeights::with_lease(
        weights.manager(),
        weights.model(),
        LeasePolicy::Full,
        |full| full.lease().verification_cost().2.as_micros(),
    )?;
    tracing::info!(micros, "full verification before serving");
    serve_stdio(&embedder, weights)
}

fn serve_stdio<P: WeightsProvider + ?Sized>(
    embedder: &Embedder,
    weights: &P,
) -> Result<(), Failure> {
    let stdin = std::io::stdin().lock();
    let stdout = std::io::stdout().lock();
    match serve(embedder, weights, stdin, stdout) {
        Ok(summary) => {
            tracing::info!(
                served = summary.served,
                refused = summary.refused,
                "input ended"
            );
            Ok(())
        }
        Err(stopped) => Err(Failure {
            reported: !matches!(
                stopped.error,
                EmbedError::Output { .. } | EmbedError::Io { .. }
            ),
            error: stopped.error,
        }),
    }
}

fn worker_error(e: WorkerError) -> EmbedError {
    EmbedError::Worker {
        code: e.exit_code(),
        reason: e.to_string(),
    }
}

/// The one-line message of a command line clap refuses, for the JSON error
/// line: the kind of error and the arguments it is about (`invalid value
/// for --lease <POLICY>`), never the value given.
fn clap_error_message(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    let args = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => vec![arg.clone()],
        Some(ContextValue::Strings(args)) => args.clone(),
        _ => Vec::new(),
    };
    let kind = e.kind().to_string();
    if args.is_empty() {
        return kind;
    }
    let args: Vec<String> = args
        .iter()
        .map(|a| vram_validation::escape_for_log(a, 80))
        .collect();
    format!("{kind}: {}", args.join(", "))
}

fn init_tracing(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => tracing::Level::ERROR,
        (false, 0) => tracing::Level::WARN,
        (false, 1) => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .without_time()
        .try_init();
}
