//! `cargo xtask gpu`: a self-contained bundle for a GPU machine that has the
//! NVIDIA driver (and nvrtc) but no Rust toolchain and no network.
//!
//! The bundle holds the facade's test binaries and the `vram` binary, all built
//! with the `cuda` feature, and `run.sh`, which runs the dual-mode test suites
//! against the real device and then `vram bench --device cuda:0`.

use crate::run::{cargo, root, step};
use std::path::PathBuf;
use std::process::Stdio;

pub(crate) fn run() -> Result<(), String> {
    let bundle = root().join("target").join("gpu-bundle");
    let _ = std::fs::remove_dir_all(&bundle);
    std::fs::create_dir_all(&bundle).map_err(|e| format!("create {}: {e}", bundle.display()))?;

    step(
        "build vram with cuda (release)",
        cargo().args([
            "build",
            "--release",
            "--locked",
            "-p",
            "vram-cli",
            "--features",
            "cuda,demo-cuda",
        ]),
    )?;
    let vram = root().join("target").join("release").join("vram");
    copy(&vram, &bundle.join("vram"))?;

    eprintln!("\n==> build test binaries with cuda (release)");
    let out = cargo()
        .args([
            "test",
            "--release",
            "--locked",
            "--no-run",
            "--message-format=json",
            "-p",
            "vram-residency",
            "-p",
            "vram-core",
            "--features",
            "vram-residency/cuda,vram-core/cuda",
        ])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cargo test --no-run: {e}"))?;
    if !out.status.success() {
        return Err(format!("building GPU test binaries failed: {}", out.status));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut tests = Vec::new();
    for line in stdout.lines() {
        if let Some(exe) = json_string_field(line, "executable") {
            let src = PathBuf::from(exe);
            let name = src
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or("test executable without a file name")?;
            // Only the suites that reach a real device: vram-core's unit tests
            // (the CUDA backend's) and the facade's dual-mode scenarios. The
            // other suites run on the mock and gain nothing from a GPU.
            if !(name.starts_with("vram_core-") || name.starts_with("cuda_dual-")) {
                continue;
            }
            copy(&src, &bundle.join(&name))?;
            tests.push(name);
        }
    }
    // Debug info is most of each binary's size; the bundle has to travel.
    for name in tests.iter().map(String::as_str).chain(["vram"]) {
        let _ = std::process::Command::new("strip")
            .arg(bundle.join(name))
            .status();
    }
    // Each step under its own time limit, the bench first: on a machine lent
    // for minutes, the measurements matter most, and a hung step must not
    // take the rest with it. With $OUT set, the output is kept there too.
    let mut script = String::from(
        r#"#!/usr/bin/env bash
# Runs vram-residency's GPU checks. Needs the NVIDIA driver; no Rust toolchain.
set -u
cd "$(dirname "$0")"
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT"; exec > >(tee "$OUT/log.txt") 2>&1; fi
fail=0
step() {
  local t=$1; shift
  echo; echo "==> [$(date +%T)] $* (limit ${t}s)"
  timeout -k 5 "$t" "$@"; local rc=$?
  echo "<== rc=$rc"; [ "$rc" -eq 0 ] || fail=1
}
nvidia-smi --query-gpu=name,memory.total,driver_version,pcie.link.gen.max,pcie.link.width.max --format=csv || true
lscpu | grep -E 'Model name|^CPU\(s\)' || true
echo "cpu features: $(grep -o -w 'sha_ni\|avx512f' /proc/cpuinfo | sort -u | tr '\n' ' ')"
step 15 ./vram devices
step 150 ./vram bench --device cuda:0 --size 1GiB --sampled-size 1GiB
"#,
    );
    for t in &tests {
        script.push_str(&format!(
            "step 90 env VRAM_RESIDENCY_REQUIRE_CUDA=1 ./{t} --test-threads 4\n"
        ));
    }
    script.push_str(
        "step 40 ./vram demo --device cuda:0 --size 1GiB\nstep 150 ./vram bench --device cuda:0 --size 4GiB --sampled-size 4GiB\necho \"==> done, failures: $fail\"\nexit $fail\n",
    );
    let script_path = bundle.join("run.sh");
    std::fs::write(&script_path, script).map_err(|e| format!("write run.sh: {e}"))?;
    set_executable(&script_path)?;
    eprintln!(
        "\nGPU bundle ready: {} ({} test binaries). Run `bash run.sh` there.",
        bundle.display(),
        tests.len()
    );
    Ok(())
}

fn copy(src: &std::path::Path, dst: &std::path::Path) -> Result<(), String> {
    std::fs::copy(src, dst)
        .map(|_| ())
        .map_err(|e| format!("copy {} -> {}: {e}", src.display(), dst.display()))
}

#[cfg(unix)]
fn set_executable(p: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod {}: {e}", p.display()))
}

#[cfg(not(unix))]
fn set_executable(_: &std::path::Path) -> Result<(), String> {
    Ok(())
}

/// Extracts `"key":"value"` from one line of cargo's JSON messages (values are
/// paths with no escaped quotes), without pulling serde into xtask.
fn json_string_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":\"");
    let start = line.find(&pat)?.checked_add(pat.len())?;
    let rest = line.get(start..)?;
    let end = rest.find('"')?;
    rest.get(..end)
}
