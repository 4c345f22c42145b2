//! `vram-embed --model DIR`: sentence embeddings for JSON lines on standard
//! input, one JSON line per request on standard output.

// The binary's output channel is standard output; diagnostics go to stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use vram_embed::{serve, EmbedError, Embedder, ModelSnapshot, SafetensorsFile};

/// Exit code of a command line clap refuses (as `vram`'s).
const USAGE: u8 = 2;

/// Serve sentence embeddings from a sentence-transformers snapshot.
///
/// Reads one request per line on standard input, `{"text": "..."}`, and
/// writes one line per request on standard output: `{"embedding": [...]}`
/// or `{"error": {"code": N, "class": "...", "message": "..."}}`. A
/// malformed request gets an error and serving goes on; weights that are
/// not what the model needs end serving.
///
/// Exit codes: 0 input ended; 1 the weights failed (missing tensor, wrong
/// shape, invalid safetensors); 2 usage (bad arguments, invalid snapshot
/// files); 3 environment (I/O).
#[derive(Debug, Parser)]
#[command(name = "vram-embed", version)]
struct Cli {
    /// The snapshot directory: modules.json, config.json, tokenizer.json,
    /// 1_Pooling/config.json and model.safetensors.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    // Coming with sealed models: --device auto|mock|cuda:N, --secret-file,
    // --audit-log, --lease sampled:K|full. They choose the WeightsProvider
    // in `weights`; nothing else here changes.
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
                "code": USAGE, "class": "usage", "message": e.kind().to_string(),
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

fn run(cli: &Cli) -> Result<(), Failure> {
    let snapshot = ModelSnapshot::open(&cli.model)?;
    let embedder = Embedder::new(&snapshot)?;
    let weights = weights(&snapshot)?;
    let stdin = std::io::stdin().lock();
    let stdout = std::io::stdout().lock();
    match serve(&embedder, &weights, stdin, stdout) {
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

/// The weights every request computes on. Today the snapshot's
/// `model.safetensors` read into host memory; with sealed models, the
/// manager (device, secret, audit log from the command line) sealing it
/// and a provider that takes a verified lease per request.
fn weights(snapshot: &ModelSnapshot) -> Result<SafetensorsFile, EmbedError> {
    let file = SafetensorsFile::read(&snapshot.weights_path())?;
    tracing::warn!(
        bytes = file.len(),
        "weights served from host memory, unsealed and unverified"
    );
    Ok(file)
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
