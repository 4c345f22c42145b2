//! `vram-serve --model PATH|DIR|hf://…`: seals the model, verifies it
//! fully once, then serves the OpenAI-compatible HTTP API on it.

// The bound address goes to standard output (a line scripts and tests
// read); diagnostics go to stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::num::{NonZeroU64, NonZeroUsize};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use vram_residency::LeasePolicy;
use vram_serve::worker::{self, WorkerConfig};
use vram_serve::{Engines, Limits, ModelKind, ServeError, Server, Stopped, EXIT_USAGE};

/// Serve a model sealed in device memory over an OpenAI-compatible HTTP API.
///
/// The model is sealed on the device first (a sentence-transformers
/// snapshot: its weights on the device, its small files bound to the seal;
/// from the hub cache with the SHA-256 each blob name promises checked in
/// the same pass), every leaf verified once, then served: each request
/// computes on weights reached through a lease verified for it (`--lease`).
///
/// Routes: POST /v1/embeddings, POST /v1/completions, POST
/// /v1/chat/completions (GGUF models), GET /v1/models, GET /health, GET
/// /metrics. Once serving, one line on standard output says where:
/// `vram-serve: listening on http://ADDR`.
///
/// Exit codes: 0 stopped by SIGINT/SIGTERM; 1 the weights failed (a refused
/// lease, named; a digest mismatch at seal time); 2 usage; 3 environment
/// (device, secret, audit log, listener, an engine this build or device
/// cannot run).
#[derive(Debug, Parser)]
#[command(name = "vram-serve", version)]
struct Cli {
    /// The model: a sentence-transformers snapshot directory, or
    /// hf://ORG/NAME[@REVISION] in the local Hugging Face cache (offline);
    /// for text generation a GGUF file, a directory holding one, or
    /// hf://ORG/NAME[@REVISION]/FILE.gguf in the cache.
    #[arg(long, value_name = "PATH|DIR|hf://ORG/NAME[/FILE.gguf]")]
    model: String,
    /// Device: auto (CUDA, else the mock, announced), mock, cuda, cuda:N.
    #[arg(long, default_value = "auto", value_name = "DEVICE")]
    device: String,
    /// Address to listen on (loopback by default; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
    listen: SocketAddr,
    /// What each request's lease verifies: sampled:K (K random leaves and
    /// the seal), full, or recent:SECONDS:K.
    #[arg(long, default_value = "sampled:1", value_name = "POLICY")]
    lease: LeasePolicy,
    /// Leaf size of the seal (a power of two, 4 KiB to 1 GiB): what a
    /// sampled:K lease re-reads K of per request. 64 KiB on every device.
    #[arg(long, default_value = "64KiB", value_parser = vram_worker::parse_leaf_size, value_name = "BYTES")]
    leaf_size: vram_residency::LeafSize,
    /// Worker secret file; else the systemd credential `vram-worker-secret`
    /// or $VRAM_SECRET_FILE; else an ephemeral secret.
    #[arg(long, value_name = "PATH")]
    secret_file: Option<PathBuf>,
    /// Audit log (JSON lines, fail-closed) for the seal and refused leases;
    /// needs the worker secret.
    #[arg(long, value_name = "PATH")]
    audit_log: Option<PathBuf>,
    /// Requests computing at once; one more is answered 429 with Retry-After.
    #[arg(long, default_value = "4", value_name = "N")]
    max_concurrent: NonZeroUsize,
    /// Largest request body in bytes; a larger one is answered 413.
    #[arg(long, default_value = "1048576", value_name = "BYTES")]
    max_body: NonZeroUsize,
    /// Longest a request may take (reading its body, its lease, computing).
    #[arg(long, default_value = "60", value_name = "SECS")]
    request_timeout: NonZeroU64,
    /// More diagnostics on stderr (-v: info, -vv: debug).
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
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    init_tracing(cli.verbose, cli.quiet);
    match run(&cli) {
        Ok(Stopped::Signal) => ExitCode::SUCCESS,
        Ok(Stopped::Compromised(reason)) => {
            let e = ServeError::Compromised(reason);
            eprintln!("vram-serve: error: {e}");
            ExitCode::from(e.exit_code())
        }
        Err(e) => {
            eprintln!("vram-serve: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(cli: &Cli) -> Result<Stopped, ServeError> {
    let limits = Limits {
        max_body: cli.max_body.get(),
        request_timeout: Duration::from_secs(cli.request_timeout.get()),
        max_concurrent: cli.max_concurrent.get(),
        ..Limits::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| ServeError::Environment(format!("cannot start the runtime: {e}")))?;
    // Bound before anything is sealed: a bad address fails in a second.
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(cli.listen))
        .map_err(|e| ServeError::Environment(format!("--listen {}: {e}", cli.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServeError::Environment(format!("--listen {}: {e}", cli.listen)))?;
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "listening beyond loopback: put an authenticating proxy in front");
    }
    let worker = worker::open(&WorkerConfig {
        device: cli.device.clone(),
        secret_file: cli.secret_file.clone(),
        audit_log: cli.audit_log.clone(),
        quiet: cli.quiet,
        leaf: Some(cli.leaf_size),
    })?;
    let (model_id, engines, held, weights) = match vram_serve::model_kind(&cli.model) {
        ModelKind::Text => {
            let text = vram_serve::text_engine(&worker, &cli.model, cli.lease)?;
            let id = text.model_id().to_owned();
            let engines = Engines {
                embeddings: None,
                text: Some(text),
            };
            (id, engines, None, None)
        }
        ModelKind::Embeddings => {
            // A device the embedder cannot compute on is refused by
            // embedding_engine before anything is sealed (exit 3).
            let location = worker::locate(&cli.model, cli.quiet)?;
            let (engine, held) = vram_serve::embedding_engine(&worker, &location, cli.lease)?;
            let weights = Arc::clone(&engine.weights);
            let engines = Engines {
                embeddings: Some(engine),
                text: None,
            };
            (
                location.model_ref.to_string(),
                engines,
                Some(held),
                Some(weights),
            )
        }
    };
    let server = Server::new(model_id.clone(), engines, held, limits)?;
    tracing::info!(model = %model_id, device = worker.device_kind(), lease = %cli.lease, %addr, "sealed and verified; serving");
    println!("vram-serve: listening on http://{addr}");
    let _ = std::io::stdout().flush();
    let stopped = runtime.block_on(server.serve(listener, shutdown_signal()));
    drop(server);
    runtime.shutdown_timeout(Duration::from_secs(5));
    if let Some(weights) = weights.and_then(Arc::into_inner) {
        if let Err(e) = weights.release() {
            tracing::error!(error = %e, "the model's release did not reach the audit log");
        }
    }
    stopped
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "SIGTERM cannot be caught; SIGINT still stops the server");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
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
