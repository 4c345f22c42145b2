//! The `vram` command: the command line ([`cli`]), the parsers of its flag
//! values ([`args`]), the commands (`cmd`, one module each) and exit codes
//! ([`exit`]). The worker a command needs (devices, secret, audit log,
//! manager, model location) is put together by `vram-worker`. The `vram`
//! binary (`src/main.rs`) only calls [`run`]; the fuzz target calls the
//! parsers ([`args::device_arg`], [`args::verify_arg`], [`args::size_arg`],
//! [`args::leaf_arg`], [`cli::Cli`]) here, on the very code the binary runs.

// A command-line tool writes to its terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]
#![forbid(unsafe_code)]

pub mod args;
pub mod cli;
mod cmd;
pub mod exit;
mod figures;
mod manifest;
mod metrics;
mod progress;
mod scratch;
mod synthetic;

use clap::Parser;
use std::process::ExitCode;

/// Runs `vram` on this process's arguments: parses them, runs the command,
/// reports an error on stderr (and as JSON on stdout under `--json`), and
/// returns the exit code.
pub fn run() -> ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(a) => a,
        Err(e) => {
            // A flag value refused by its parser (`args`): reported as the
            // command's own error, one line.
            if let Some(err) = exit::CliError::of_flag_value(&e) {
                eprintln!("vram: error: {}", exit::one_safe_line(&err.message));
                if json_asked() {
                    print_json_error(&err);
                }
                return ExitCode::from(err.code);
            }
            // clap prints help/version to stdout (exit 0) and errors to stderr.
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            if code != exit::OK && json_asked() {
                // Not parsed, but asked for: a script still gets JSON.
                let err = exit::CliError::usage(exit::clap_error_message(&e));
                print_json_error(&err);
            }
            return ExitCode::from(code);
        }
    };
    init_tracing(args.verbose, args.quiet, colour_on_stderr());
    match cmd::run(&args) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            if !e.silent {
                eprintln!("vram: error: {}", exit::one_safe_line(&e.message));
            }
            // Under --json the error is JSON on stdout as well, once: unless
            // the command already put it into its own output.
            if args.command.json() && !e.in_json {
                print_json_error(&e);
            }
            ExitCode::from(e.code)
        }
    }
}

/// `{"error":{"code":N,"class":"...","message":"..."}}` on stdout, one line.
fn print_json_error(e: &exit::CliError) {
    println!("{}", serde_json::json!({ "error": e.to_json() }));
}

/// `--json` among the arguments (before a `--`), for errors clap reports
/// before there are parsed arguments to ask.
fn json_asked() -> bool {
    std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

/// Colour only on a terminal, and never with `NO_COLOR` set (to anything
/// non-empty, as <https://no-color.org> asks).
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

fn init_tracing(verbose: u8, quiet: bool, colour: bool) {
    use tracing_subscriber::fmt;
    let level = match (quiet, verbose) {
        (true, _) => tracing::Level::ERROR,
        (false, 0) => tracing::Level::WARN,
        (false, 1) => tracing::Level::INFO,
        (false, 2) => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    let _ = fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(false)
        .without_time()
        .try_init();
}
