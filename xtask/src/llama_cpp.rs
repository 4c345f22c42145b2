//! `cargo xtask llama-cpp [--threads N]`: greedy decoding of the sealed
//! engine against llama.cpp on the real SmolLM2-135M-Instruct GGUF.
//!
//! llama.cpp comes from PyPI: `llama-cpp-python==0.3.36` (and numpy), built
//! from its source distribution into the virtual environment
//! `target/llama-cpp` the first time (about 20 minutes on 2 cores; not part
//! of CI). vram-llm's `greedy_report` example answers the prompts of
//! `xtask/llama_cpp/prompts.json` on the sealed engine (release build), then
//! `xtask/llama_cpp/compare.py` answers them with llama.cpp on the same
//! thread count, prints the table and writes it as JSON under
//! `target/llama-cpp-compare/`. Exits non-zero when a hard check fails
//! (prompt tokens, first token, top-5 logits).

use crate::run::{cargo, root, step};
use std::path::PathBuf;
use std::process::Command;

/// The pinned reference.
pub(crate) const PACKAGE: &str = "llama-cpp-python==0.3.36";

/// The virtual environment's Python with llama.cpp importable, or why not
/// (nothing is installed).
pub(crate) fn installed_python() -> Result<PathBuf, String> {
    let python = root()
        .join("target")
        .join("llama-cpp")
        .join("bin")
        .join("python");
    let ok = Command::new(&python)
        .args(["-c", "import llama_cpp, numpy"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(python)
    } else {
        Err(format!(
            "{} cannot import llama_cpp (run `cargo xtask llama-cpp` once to build {PACKAGE})",
            python.display()
        ))
    }
}

/// The virtual environment's Python, installing llama.cpp when absent.
fn python() -> Result<PathBuf, String> {
    if let Ok(python) = installed_python() {
        return Ok(python);
    }
    let venv = root().join("target").join("llama-cpp");
    eprintln!(
        "==> building {PACKAGE} from its PyPI source distribution into {}\n    \
         (a CPU build of llama.cpp: about 20 minutes on 2 cores)",
        venv.display()
    );
    step(
        "python3 -m venv target/llama-cpp",
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
    )?;
    step(
        &format!("pip install {PACKAGE} numpy"),
        Command::new(venv.join("bin").join("pip")).args([
            "install",
            "--no-binary",
            "llama-cpp-python",
            PACKAGE,
            "numpy",
        ]),
    )?;
    installed_python()
}

fn threads(args: &[String]) -> Result<String, String> {
    match args {
        [] => Ok("1".to_owned()),
        [flag, n] if flag == "--threads" && n.parse::<u32>().is_ok_and(|n| n > 0) => Ok(n.clone()),
        _ => Err("usage: cargo xtask llama-cpp [--threads N]".into()),
    }
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let threads = threads(args)?;
    let python = python()?;
    let model = crate::llm_model::model_file()?;
    let out = root().join("target").join("llama-cpp-compare");
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let prompts = root().join("xtask").join("llama_cpp").join("prompts.json");
    let ours = out.join("vram-llm.json");
    step(
        "the sealed engine's greedy answers (vram-llm greedy_report, release)",
        cargo()
            .args([
                "run",
                "--release",
                "--locked",
                "-p",
                "vram-llm",
                "--example",
                "greedy_report",
                "--",
                "--tokens",
                "32",
                "--model",
            ])
            .arg(&model)
            .arg("--prompts")
            .arg(&prompts)
            .arg("--out")
            .arg(&ours)
            // candle's own ops; the quantized kernels run on the calling thread.
            .env("RAYON_NUM_THREADS", &threads),
    )?;
    step(
        "llama.cpp's greedy answers and the comparison",
        Command::new(&python)
            .arg(root().join("xtask").join("llama_cpp").join("compare.py"))
            .arg("--model")
            .arg(&model)
            .arg("--prompts")
            .arg(&prompts)
            .arg("--engine-json")
            .arg(&ours)
            .arg("--out")
            .arg(out.join("compare.json"))
            .args(["--threads", &threads, "--tokens", "32"]),
    )
}

#[cfg(test)]
mod tests {
    use super::threads;

    #[test]
    fn one_thread_unless_told_and_a_bad_count_is_refused() {
        let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(threads(&[]), Ok("1".to_owned()));
        assert_eq!(threads(&args(&["--threads", "2"])), Ok("2".to_owned()));
        assert!(threads(&args(&["--threads", "0"])).is_err());
        assert!(threads(&args(&["--threads", "two"])).is_err());
        assert!(threads(&args(&["--thread", "2"])).is_err());
    }
}
