//! `cargo xtask gpu`: a self-contained bundle for a GPU machine that has the
//! NVIDIA driver (and nvrtc) but no Rust toolchain and no network.
//!
//! The bundle holds the facade's test binaries and the `vram` binary, built
//! with the `cuda` feature; the CUDA engine (vram-llm's `cuda-engine`: candle's
//! CUDA kernels computing on leased device memory) with its tests, the GGUF
//! corruption demo and `greedy_report`; `libcudart` (candle's kernels link
//! it); the Python package's wheel with its pytest suite (under `py/`, as laid
//! out in the repository: the CUDA DLPack export checked with the machine's
//! PyTorch); and `run.sh`, which runs the dual-mode suites, the engine and the
//! Python suite on the real device, then `vram bench --device cuda:0`.
//!
//! Candle's kernels are compiled by `nvcc`, which comes from PyPI: the
//! toolkit's wheels, all pinned to CUDA 13.0 (newer `nvidia-nvvm` releases
//! emit PTX that a driver of the 13.0 generation cannot load), are installed
//! into a virtual environment under `target/cuda` on first use. The build
//! machine needs Python 3 and network access to PyPI (or pip's cache); no
//! driver and no GPU.

use crate::run::{cargo, root, step};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The CUDA toolkit's wheels, pinned to one release: the compiler, its
/// back end, its headers (crt, cccl: `nv/target`, which `cuda_fp16.h`
/// includes) and the runtime (`libcudart`, which candle's kernels link).
const TOOLKIT: &[&str] = &[
    "nvidia-cuda-nvcc==13.0.*",
    "nvidia-nvvm==13.0.*",
    "nvidia-cuda-crt==13.0.*",
    "nvidia-cuda-cccl==13.0.*",
    "nvidia-cuda-runtime==13.0.*",
];

/// Where the toolkit lives once installed: `(venv, toolkit root)`; the root
/// holds `bin/nvcc`, `include/`, `lib/libcudart.so.13`.
fn toolkit_paths() -> (PathBuf, PathBuf) {
    let venv = root().join("target").join("cuda");
    let nv = venv.join("lib");
    // site-packages lives under lib/pythonX.Y/; find it rather than guess.
    let root_dir = std::fs::read_dir(&nv)
        .ok()
        .and_then(|entries| {
            entries.flatten().map(|e| e.path()).find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("python"))
            })
        })
        .map(|py| py.join("site-packages").join("nvidia").join("cu13"))
        .unwrap_or_else(|| nv.join("python3").join("site-packages/nvidia/cu13"));
    (venv, root_dir)
}

/// Installs the pinned toolkit under target/cuda unless it is there, and
/// returns its root.
fn toolkit() -> Result<PathBuf, String> {
    let (venv, _) = toolkit_paths();
    let installed = |nv: &std::path::Path| {
        nv.join("include").join("nv").join("target").exists()
            && Command::new(nv.join("bin").join("nvcc"))
                .arg("--version")
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("release 13.0"))
    };
    if !installed(&toolkit_paths().1) {
        if !venv.join("bin").join("pip").exists() {
            step(
                "a virtual environment for the CUDA toolkit (target/cuda)",
                Command::new("python3").args(["-m", "venv"]).arg(&venv),
            )?;
        }
        step(
            "the CUDA 13.0 toolkit from PyPI (nvcc, nvvm, crt, cccl, cudart)",
            Command::new(venv.join("bin").join("pip"))
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .args(TOOLKIT),
        )?;
    }
    let nv = toolkit_paths().1;
    if !installed(&nv) {
        return Err(format!(
            "the CUDA toolkit is not usable at {} after installing it",
            nv.display()
        ));
    }
    Ok(nv)
}

/// `cargo`, with the toolkit on its path: nvcc for candle's kernels (for
/// `CUDA_COMPUTE_CAP`, 90 by default: the H200s' sm_90; set it to build for
/// another GPU), and `libcudart.so` where the linker looks for it.
fn cargo_with_toolkit(nv: &std::path::Path) -> Result<Command, String> {
    let link = root().join("target").join("cuda").join("link");
    std::fs::create_dir_all(&link).map_err(|e| format!("create {}: {e}", link.display()))?;
    let so = link.join("libcudart.so");
    let _ = std::fs::remove_file(&so);
    #[cfg(unix)]
    std::os::unix::fs::symlink(nv.join("lib").join("libcudart.so.13"), &so)
        .map_err(|e| format!("link {}: {e}", so.display()))?;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![nv.join("bin")];
    paths.extend(std::env::split_paths(&path));
    let path = std::env::join_paths(paths).map_err(|e| format!("PATH: {e}"))?;
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into());
    let mut cmd = cargo();
    cmd.env("PATH", path)
        .env("CUDA_ROOT", nv)
        .env("CUDA_PATH", nv)
        .env("CUDA_COMPUTE_CAP", cap)
        .env("LIBRARY_PATH", &link);
    Ok(cmd)
}

/// Builds test binaries with `args` and copies into `bundle` those whose
/// file name starts with one of `prefixes`; returns their names.
fn test_binaries(
    mut cmd: Command,
    args: &[&str],
    prefixes: &[&str],
    bundle: &std::path::Path,
) -> Result<Vec<String>, String> {
    eprintln!("\n==> build test binaries (release): {args:?}");
    let out = cmd
        .args([
            "test",
            "--release",
            "--locked",
            "--no-run",
            "--message-format=json",
        ])
        .args(args)
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
            if !prefixes.iter().any(|p| name.starts_with(p)) || tests.contains(&name) {
                continue;
            }
            copy(&src, &bundle.join(&name))?;
            tests.push(name);
        }
    }
    Ok(tests)
}

/// The Python package for the GPU machine, under `bundle/py/` laid out as in
/// the repository (the tests find the README and the examples by their
/// paths): the wheel (built with the test hook: a test bundle, never
/// shipped), `vram-py/tests`, `vram-py/examples` and the README. The
/// machine's own Python has NumPy, pytest and PyTorch with CUDA; `run.sh`
/// installs the wheel into a temporary directory and runs the suite with
/// `VRAM_RESIDENCY_REQUIRE_CUDA=1`, so the CUDA DLPack tests fail there
/// rather than say NOT RUN. maturin comes from PyPI into the toolkit's
/// virtual environment (`target/cuda`).
fn python_package(bundle: &std::path::Path) -> Result<(), String> {
    let (venv, _) = toolkit_paths();
    let bin = venv.join("bin");
    if !bin.join("maturin").exists() {
        step(
            "maturin from PyPI (target/cuda)",
            Command::new(bin.join("pip"))
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .arg("maturin>=1.5,<2"),
        )?;
    }
    let py = bundle.join("py");
    step(
        "build the Python package's wheel (vram-py, release, with test-corruption)",
        &mut crate::ci::test_wheel(
            &bin.join("maturin"),
            &py.join("wheels"),
            &["--release", "--strip"],
        ),
    )?;
    for dir in ["tests", "examples"] {
        let from = root().join("vram-py").join(dir);
        let to = py.join("vram-py").join(dir);
        std::fs::create_dir_all(&to).map_err(|e| format!("create {}: {e}", to.display()))?;
        let entries = std::fs::read_dir(&from).map_err(|e| format!("{}: {e}", from.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|x| x == "py") {
                if let Some(name) = path.file_name() {
                    copy(&path, &to.join(name))?;
                }
            }
        }
    }
    copy(&root().join("README.md"), &py.join("README.md"))?;
    Ok(())
}

pub(crate) fn run() -> Result<(), String> {
    let bundle = root().join("target").join("gpu-bundle");
    let _ = std::fs::remove_dir_all(&bundle);
    std::fs::create_dir_all(bundle.join("lib"))
        .map_err(|e| format!("create {}: {e}", bundle.display()))?;

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
    let release = root().join("target").join("release");
    copy(&release.join("vram"), &bundle.join("vram"))?;

    // Only the suites that reach a real device: vram-core's unit tests (the
    // CUDA backend's) and the facade's dual-mode scenarios. The other suites
    // run on the mock and gain nothing from a GPU.
    let mut tests = test_binaries(
        cargo(),
        &[
            "-p",
            "vram-residency",
            "-p",
            "vram-core",
            "--features",
            "vram-residency/cuda,vram-core/cuda",
        ],
        &["vram_core-", "cuda_dual-"],
        &bundle,
    )?;

    // The CUDA engine: candle's kernels compiled by the pinned toolkit.
    let nv = toolkit()?;
    step(
        "build the CUDA engine's demo and greedy_report (release, cuda-engine)",
        cargo_with_toolkit(&nv)?.args([
            "build",
            "--release",
            "--locked",
            "-p",
            "vram-serve",
            "-p",
            "vram-llm",
            "--features",
            "vram-serve/demo-cuda,vram-llm/cuda-engine",
            "--example",
            "gguf_corruption_demo",
            "--example",
            "greedy_report",
        ]),
    )?;
    step(
        "build vram-serve with the CUDA engine (release)",
        cargo_with_toolkit(&nv)?.args([
            "build",
            "--release",
            "--locked",
            "-p",
            "vram-serve",
            "--features",
            "cuda-engine",
        ]),
    )?;
    for (src, name) in [
        (
            release.join("examples").join("gguf_corruption_demo"),
            "gguf_corruption_demo",
        ),
        (
            release.join("examples").join("greedy_report"),
            "greedy_report",
        ),
        (release.join("vram-serve"), "vram-serve"),
    ] {
        copy(&src, &bundle.join(name))?;
    }
    tests.extend(test_binaries(
        cargo_with_toolkit(&nv)?,
        &[
            "-p",
            "vram-llm",
            "--features",
            "cuda-engine",
            "--lib",
            "--test",
            "cuda_engine",
        ],
        &["vram_llm-", "cuda_engine-"],
        &bundle,
    )?);
    // The embedder's CUDA engine: its GPU tests (CUDA embeddings against the
    // CPU's on the same file, F32 and F16; embeddings per second).
    // vram-serve above serves embeddings on CUDA with it too.
    tests.extend(test_binaries(
        cargo_with_toolkit(&nv)?,
        &[
            "-p",
            "vram-embed",
            "--features",
            "cuda-engine",
            "--test",
            "cuda_engine",
        ],
        &["cuda_engine-"],
        &bundle,
    )?);
    python_package(&bundle)?;
    copy(
        &nv.join("lib").join("libcudart.so.13"),
        &bundle.join("lib").join("libcudart.so.13"),
    )?;
    let prompts = root().join("xtask").join("llama_cpp").join("prompts.json");
    copy(&prompts, &bundle.join("prompts.json"))?;

    // Debug info is most of each binary's size; the bundle has to travel.
    for name in tests.iter().map(String::as_str).chain([
        "vram",
        "vram-serve",
        "gguf_corruption_demo",
        "greedy_report",
    ]) {
        let _ = Command::new("strip").arg(bundle.join(name)).status();
    }
    // Each step under its own time limit, the bench first: on a machine lent
    // for minutes, the measurements matter most, and a hung step must not
    // take the rest with it. With $OUT set, the output is kept there too.
    copy(
        &root().join("xtask").join("gpu").join("compare.py"),
        &bundle.join("compare.py"),
    )?;
    let mut script = String::from(
        r#"#!/usr/bin/env bash
# Runs vram-residency's GPU checks. Needs the NVIDIA driver; no Rust toolchain.
# MODEL=FILE.gguf (or a models/*.gguf beside this script) adds the CUDA
# engine's measurements on a real model. ONLY="NAME ..." runs only those
# steps (devices bench engine-demo greedy python tests demo bench-4g), for a
# device lent for minutes: e.g. ONLY=python for the Python package alone.
set -u
cd "$(dirname "$0")"
export LD_LIBRARY_PATH="$PWD/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT"; exec > >(tee "$OUT/log.txt") 2>&1; fi
out=${OUT:-.}
fail=0
step() {
  local name=$1 t=$2; shift 2
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then echo "(skipped: $name is not in ONLY)"; return; fi
  echo; echo "==> [$(date +%T)] $* (limit ${t}s)"
  timeout -k 5 "$t" "$@"; local rc=$?
  echo "<== rc=$rc"; [ "$rc" -eq 0 ] || fail=1
}
nvidia-smi --query-gpu=name,memory.total,driver_version,pcie.link.gen.max,pcie.link.width.max --format=csv || true
lscpu | grep -E 'Model name|^CPU\(s\)' || true
echo "cpu features: $(grep -o -w 'sha_ni\|avx512f' /proc/cpuinfo | sort -u | tr '\n' ' ')"
echo "libraries the CUDA engine loads at run time:"
for l in libcuda.so libcublas.so libcublasLt.so libcurand.so libnvrtc.so; do
  if ldconfig -p | grep -q "$l"; then echo "  $l: found"; else echo "  $l: NOT FOUND (the CUDA engine refuses to start without it)"; fi
done
step devices 15 ./vram devices
step bench 150 ./vram bench --device cuda:0 --size 1GiB --sampled-size 1GiB
# The CUDA engine: a request answered from sealed device memory, one byte of
# a tensor flipped in device memory, the next request refused naming it.
step engine-demo 90 ./gguf_corruption_demo --device cuda:0
MODEL=${MODEL:-$(ls models/*.gguf 2>/dev/null | head -n 1)}
if [ -n "$MODEL" ]; then
  step greedy 240 ./greedy_report --model "$MODEL" --prompts prompts.json --device cuda:0 --out "$out/gpu-sealed.json"
  step greedy 240 ./greedy_report --model "$MODEL" --prompts prompts.json --device cuda:0 --engine unsealed --out "$out/gpu-unsealed.json"
  step greedy 240 ./greedy_report --model "$MODEL" --prompts prompts.json --device mock --out "$out/cpu-sealed.json"
  step greedy 30 python3 compare.py --cpu "$out/cpu-sealed.json" --gpu "$out/gpu-sealed.json" --unsealed "$out/gpu-unsealed.json" --out "$out/gpu-compare.json"
else
  echo "NOTE: no MODEL and no models/*.gguf: the CUDA engine's measurements on a real model are NOT taken"
fi
# The Python package on the GPU: the CUDA DLPack export read by PyTorch in
# place (and the whole suite, with the machine's NumPy and PyTorch).
step python 240 bash -c 'site=$(mktemp -d) && python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" py/wheels/*.whl && cd py && PYTHONPATH="$site" VRAM_RESIDENCY_REQUIRE_CUDA=1 python3 -m pytest -q -s -p no:cacheprovider vram-py/tests'
"#,
    );
    for t in &tests {
        script.push_str(&format!(
            "step tests 120 env VRAM_RESIDENCY_REQUIRE_CUDA=1 ./{t} --test-threads 4 --nocapture\n"
        ));
    }
    script.push_str(
        "step demo 40 ./vram demo --device cuda:0 --size 1GiB\nstep bench-4g 150 ./vram bench --device cuda:0 --size 4GiB --sampled-size 4GiB\necho \"==> done, failures: $fail\"\nexit $fail\n",
    );
    let script_path = bundle.join("run.sh");
    std::fs::write(&script_path, script).map_err(|e| format!("write run.sh: {e}"))?;
    set_executable(&script_path)?;
    let size: u64 = std::fs::read_dir(&bundle)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    // The engine's binaries carry candle's PTX and kernels (about 60 MB
    // each, mostly text that compresses eightfold); the device tool carries
    // at most 64 MiB, so the bundle travels as one xz archive as well.
    let archive = root().join("target").join("gpu-bundle.tar.xz");
    step(
        "compress the bundle (target/gpu-bundle.tar.xz)",
        Command::new("tar")
            .env("XZ_OPT", "-6 -T0")
            .arg("-C")
            .arg(root().join("target"))
            .args(["-cJf"])
            .arg(&archive)
            .arg("gpu-bundle"),
    )?;
    let packed = std::fs::metadata(&archive).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "\nGPU bundle ready: {} ({} test binaries, {} MiB; {} as {} MiB). Run `bash run.sh` \
         there (MODEL=FILE.gguf for the engine's measurements on a real model); from the \
         archive: `tar xJf target/gpu-bundle.tar.xz -C /tmp && bash /tmp/gpu-bundle/run.sh` \
         (without xz: python3 -c \"import tarfile; tarfile.open('target/gpu-bundle.tar.xz').\
         extractall('/tmp')\").",
        bundle.display(),
        tests.len(),
        size >> 20,
        archive.display(),
        packed >> 20
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
