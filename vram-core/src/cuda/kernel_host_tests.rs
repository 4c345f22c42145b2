//! Host emulation of the leaf-hashing kernel.
//!
//! CI has no GPU and no CUDA toolkit, so NVRTC never sees [`SHA256_LEAVES_SRC`]
//! there. This test compiles the kernel's source, unchanged but for one
//! `extern "C"` (C++ linkage syntax that C does not have), as portable C with the
//! system C compiler, runs it for every (block, thread) of the grid that
//! [`launch_config`] gives the real launch, and compares every hash with ring's
//! `SHA-256(prefix || leaf)`. A small shim stands in for what CUDA provides
//! (`__global__`, `__device__`, `__constant__`, `blockIdx`, ...).
//!
//! Where the compiler supports them, AddressSanitizer and UndefinedBehaviorSanitizer
//! are on: a read past `data[..data_len]` or `prefix[..prefix_len]`, a write past
//! `out[..count * 32]`, a misaligned 32-bit load or an out-of-range shift fails
//! the test. Without them, guard bytes after the output still catch stray writes.
#![allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]

use super::buffer::{launch_config, leaf_range};
use super::kernel::{SHA256_LEAVES_FN, SHA256_LEAVES_SRC};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What CUDA provides and C does not. `__device__` functions become `static`
/// (internal linkage, as in a CUDA translation unit) and the kernel an ordinary
/// function; `uint4` has CUDA's 16-byte alignment (GNU C's `aligned` attribute,
/// which gcc and clang accept under `-std=c99`), so UBSan checks the kernel's
/// 16-byte loads as the GPU would; the driver loop below sets the built-in indices.
const SHIM: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define __global__
#define __device__ static
#define __forceinline__ inline
#define __constant__ static const
typedef struct { unsigned int x, y, z, w; } __attribute__((aligned(16))) uint4;
struct vram_dim3 { unsigned x; };
static struct vram_dim3 blockIdx, blockDim, threadIdx;
"#;

/// Reads the cases, runs each launch over its whole grid, writes the hashes.
///
/// Input (all integers 64-bit little-endian): the number of cases, then per case
/// `kind misalign data_len prefix_len leaf_size first_leaf count grid_x block_x`,
/// `data_len` data bytes and `prefix_len` prefix bytes. `kind` 0 is a kernel
/// launch (writes `count * 32` bytes); `kind` 1 hashes `prefix || data` with the
/// kernel's per-leaf function directly (writes 32 bytes), for the empty leaf that
/// no launch can produce. The data is placed `misalign` bytes into its own
/// allocation of exactly `misalign + data_len` bytes.
const DRIVER: &str = r#"
static int vram_read_u64(FILE* f, u64* v) {
    unsigned char b[8];
    int i;
    if (fread(b, 1, 8, f) != 8) return 0;
    *v = 0;
    for (i = 7; i >= 0; --i) *v = (*v << 8) | (u64)b[i];
    return 1;
}

#define VRAM_GUARD 64u

int main(int argc, char** argv) {
    FILE* in;
    FILE* outf;
    u64 cases, c;
    if (argc != 3) return 2;
    in = fopen(argv[1], "rb");
    outf = fopen(argv[2], "wb");
    if (!in || !outf) return 2;
    if (!vram_read_u64(in, &cases)) return 2;
    for (c = 0; c < cases; ++c) {
        u64 kind, misalign, data_len, prefix_len, leaf_size, first_leaf, count, grid_x, block_x;
        u64 out_len, g;
        u8* data_buf;
        u8* prefix;
        u8* out;
        if (!vram_read_u64(in, &kind) || !vram_read_u64(in, &misalign) ||
            !vram_read_u64(in, &data_len) || !vram_read_u64(in, &prefix_len) ||
            !vram_read_u64(in, &leaf_size) || !vram_read_u64(in, &first_leaf) ||
            !vram_read_u64(in, &count) || !vram_read_u64(in, &grid_x) ||
            !vram_read_u64(in, &block_x)) return 3;
        /* Exactly sized, so that the sanitizer sees any read past the end. */
        data_buf = (u8*)malloc((size_t)(misalign + data_len) + (misalign + data_len == 0));
        prefix = (u8*)malloc((size_t)prefix_len + (prefix_len == 0));
        out_len = kind == 0 ? count * 32ull : 32ull;
        out = (u8*)malloc((size_t)(out_len + VRAM_GUARD));
        if (!data_buf || !prefix || !out) return 4;
        memset(data_buf, 0xEE, (size_t)misalign);
        if (fread(data_buf + misalign, 1, (size_t)data_len, in) != data_len) return 3;
        if (fread(prefix, 1, (size_t)prefix_len, in) != prefix_len) return 3;
        memset(out, 0xA5, (size_t)(out_len + VRAM_GUARD));
        if (kind == 0) {
            blockDim.x = (unsigned)block_x;
            for (blockIdx.x = 0; blockIdx.x < grid_x; ++blockIdx.x) {
                for (threadIdx.x = 0; threadIdx.x < block_x; ++threadIdx.x) {
                    vram_sha256_leaves(data_buf + misalign, data_len, prefix, prefix_len, leaf_size,
                                       first_leaf, count, out);
                }
            }
        } else {
            vram_sha256_prefixed(prefix, prefix_len, data_buf + misalign, data_len, out);
        }
        for (g = 0; g < VRAM_GUARD; ++g) {
            if (out[out_len + g] != 0xA5) {
                fprintf(stderr, "case %llu: the kernel wrote past out[count * 32]\n", c);
                return 5;
            }
        }
        if (fwrite(out, 1, (size_t)out_len, outf) != out_len) return 6;
        free(data_buf);
        free(prefix);
        free(out);
    }
    if (fclose(outf) != 0) return 6;
    fclose(in);
    return 0;
}
"#;

/// The 64-byte leaf domain tag of the tree format (vram-crypto's `LEAF_PREFIX`:
/// `vram-residency tree v1 leaf` padded with zeros), which fills one block.
fn leaf_prefix() -> Vec<u8> {
    let mut tag = b"vram-residency tree v1 leaf".to_vec();
    tag.resize(64, 0);
    tag
}

/// Deterministic bytes with no period of 4 or 64 (so a misplaced word or block
/// changes the hash).
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 11) as u8
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// A launch over the grid `launch_config(count)` gives.
    Launch,
    /// The per-leaf function on `prefix || data` (the empty leaf).
    Direct,
}

struct Case {
    kind: Kind,
    misalign: usize,
    data: Vec<u8>,
    prefix: Vec<u8>,
    leaf_size: u64,
    first_leaf: u64,
    count: u64,
}

impl Case {
    fn describe(&self) -> String {
        format!(
            "{:?} data_len {} misalign {} prefix_len {} leaf_size {} first_leaf {} count {}",
            self.kind,
            self.data.len(),
            self.misalign,
            self.prefix.len(),
            self.leaf_size,
            self.first_leaf,
            self.count
        )
    }

    fn expected(&self) -> Vec<[u8; 32]> {
        let sha = |bytes: &[u8]| -> [u8; 32] {
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            ctx.update(&self.prefix);
            ctx.update(bytes);
            ctx.finish().as_ref().try_into().unwrap()
        };
        match self.kind {
            Kind::Direct => vec![sha(&self.data)],
            Kind::Launch => (0..self.count)
                .map(|i| {
                    let start = ((self.first_leaf + i) * self.leaf_size) as usize;
                    let end = (start + self.leaf_size as usize).min(self.data.len());
                    sha(&self.data[start..end])
                })
                .collect(),
        }
    }

    fn encode(&self, input: &mut Vec<u8>) {
        let (grid_x, block_x) = match self.kind {
            Kind::Direct => (0, 0),
            Kind::Launch => {
                // The host-side checks the real launch makes before it launches.
                let end = leaf_range(
                    self.data.len() as u64,
                    self.leaf_size,
                    self.first_leaf,
                    self.count,
                )
                .unwrap_or_else(|e| panic!("invalid case {}: {e}", self.describe()));
                assert_eq!(end, self.first_leaf + self.count);
                let config = launch_config(self.count).unwrap();
                assert_eq!((config.grid_dim.1, config.grid_dim.2), (1, 1));
                assert_eq!((config.block_dim.1, config.block_dim.2), (1, 1));
                (u64::from(config.grid_dim.0), u64::from(config.block_dim.0))
            }
        };
        let kind = match self.kind {
            Kind::Launch => 0u64,
            Kind::Direct => 1,
        };
        for v in [
            kind,
            self.misalign as u64,
            self.data.len() as u64,
            self.prefix.len() as u64,
            self.leaf_size,
            self.first_leaf,
            self.count,
            grid_x,
            block_x,
        ] {
            input.extend_from_slice(&v.to_le_bytes());
        }
        input.extend_from_slice(&self.data);
        input.extend_from_slice(&self.prefix);
    }

    fn output_len(&self) -> usize {
        match self.kind {
            Kind::Direct => 32,
            Kind::Launch => self.count as usize * 32,
        }
    }
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut seed = 1u32;
    let mut next_seed = || {
        seed += 1;
        seed
    };

    // Every message length across the padding boundaries: one leaf of 0..=192
    // bytes (three blocks) after prefixes that put the leaf at every interesting
    // offset within a block (64 is the real tag), at each data misalignment.
    for prefix_len in [0usize, 1, 3, 55, 56, 63, 64, 65, 119] {
        let prefix = if prefix_len == 64 {
            leaf_prefix()
        } else {
            pattern(prefix_len, 1000 + prefix_len as u32)
        };
        for len in 0usize..=192 {
            let misalign = (len + prefix_len) % 4;
            let data = pattern(len, next_seed());
            if len == 0 {
                cases.push(Case {
                    kind: Kind::Direct,
                    misalign,
                    data,
                    prefix: prefix.clone(),
                    leaf_size: 0,
                    first_leaf: 0,
                    count: 0,
                });
                continue;
            }
            cases.push(Case {
                kind: Kind::Launch,
                misalign,
                data,
                prefix: prefix.clone(),
                leaf_size: len as u64,
                first_leaf: 0,
                count: 1,
            });
        }
    }

    // Many leaves per launch: leaf sizes that are and are not multiples of the
    // block, full and partial last leaves, launches that start past leaf 0 and
    // stop before the end, counts below, at and across THREADS_PER_BLOCK.
    let prefixes = [leaf_prefix(), Vec::new(), pattern(13, 77)];
    for (leaf_size, full_leaves) in [
        (1u64, 300u64),
        (55, 130),
        (64, 300),
        (100, 129),
        (65, 40),
        (4096, 20),
    ] {
        for tail in [0u64, 1, 55, 56, 63, 64, 119, 120, leaf_size - 1] {
            if tail >= leaf_size && tail != 0 {
                continue;
            }
            let len = (full_leaves * leaf_size + tail) as usize;
            let leaves = (len as u64).div_ceil(leaf_size);
            for (first_leaf, count) in [
                (0, leaves),
                (1, leaves - 1),
                (leaves / 3, leaves - leaves / 3),
                (2, (leaves - 3).min(128)),
                (leaves - 1, 1),
            ] {
                let n = cases.len();
                cases.push(Case {
                    kind: Kind::Launch,
                    misalign: n % 4,
                    data: pattern(len, next_seed()),
                    prefix: prefixes[n % prefixes.len()].clone(),
                    leaf_size,
                    first_leaf,
                    count,
                });
            }
        }
    }

    // The default leaf size: 1 MiB leaves, two full and a partial one, aligned
    // and not, with the real tag and with an odd prefix.
    let mib = 1usize << 20;
    for (misalign, prefix) in [
        (0, leaf_prefix()),
        (1, leaf_prefix()),
        (0, pattern(13, 5)),
        (3, pattern(7, 6)),
    ] {
        let len = 2 * mib + 1000 + misalign;
        cases.push(Case {
            kind: Kind::Launch,
            misalign,
            data: pattern(len, next_seed()),
            prefix,
            leaf_size: mib as u64,
            first_leaf: if misalign == 0 { 0 } else { 1 },
            count: if misalign == 0 { 3 } else { 2 },
        });
    }
    cases
}

/// The system C compiler: `$CC` when set, else `cc`, `gcc` or `clang`.
fn c_compiler() -> Option<String> {
    let mut candidates = Vec::new();
    if let Ok(cc) = std::env::var("CC") {
        if !cc.trim().is_empty() {
            candidates.push(cc);
        }
    }
    candidates.extend(["cc", "gcc", "clang"].map(str::to_owned));
    candidates.into_iter().find(|cc| {
        Command::new(cc)
            .arg("--version")
            .output()
            .is_ok_and(|out| out.status.success())
    })
}

/// The kernel source as C: only the C++ linkage specifier goes.
fn kernel_as_c() -> String {
    let specifier = "extern \"C\" __global__";
    assert_eq!(
        SHA256_LEAVES_SRC.matches(specifier).count(),
        1,
        "the kernel entry point should be the one `extern \"C\"` item"
    );
    assert!(SHA256_LEAVES_SRC.contains(&format!("__global__ void {SHA256_LEAVES_FN}(")));
    SHA256_LEAVES_SRC.replace(specifier, "__global__")
}

const BASE_FLAGS: [&str; 5] = ["-std=c99", "-O2", "-Wall", "-Werror", "-Wextra"];
const SANITIZE_FLAGS: [&str; 4] = [
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
    "-g",
];

fn compile(cc: &str, source: &Path, binary: &Path, sanitize: bool) -> Result<(), String> {
    let mut command = Command::new(cc);
    command.args(BASE_FLAGS);
    if sanitize {
        command.args(SANITIZE_FLAGS);
    }
    let out = command
        .arg("-o")
        .arg(binary)
        .arg(source)
        .output()
        .map_err(|e| format!("running {cc}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cc} {}{}failed ({}):\n{}",
            BASE_FLAGS.join(" "),
            if sanitize { " (sanitizers) " } else { " " },
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn run(binary: &Path, input: &Path, output: &Path) -> Result<(), String> {
    let out = Command::new(binary)
        .arg(input)
        .arg(output)
        // Leak checking needs ptrace, which containers often forbid; the driver
        // frees everything anyway.
        .env("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=0")
        .env("UBSAN_OPTIONS", "print_stacktrace=1")
        .output()
        .map_err(|e| format!("running the kernel emulation: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "the kernel emulation failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Compiles the emulation, with sanitizers when they compile and run here.
/// Returns the binary and whether sanitizers are on.
fn build(cc: &str, dir: &Path) -> (PathBuf, bool) {
    let source = dir.join("kernel_emulation.c");
    std::fs::write(&source, format!("{SHIM}{}{DRIVER}", kernel_as_c())).unwrap();
    let sanitized = dir.join("kernel_emulation_sanitized");
    let empty = dir.join("empty.bin");
    std::fs::write(&empty, 0u64.to_le_bytes()).unwrap();
    let sanitizer_error = match compile(cc, &source, &sanitized, true)
        .and_then(|()| run(&sanitized, &empty, &dir.join("empty.out")))
    {
        Ok(()) => return (sanitized, true),
        Err(e) => e,
    };
    let plain = dir.join("kernel_emulation");
    if let Err(e) = compile(cc, &source, &plain, false) {
        panic!("the CUDA kernel does not compile as C:\n{e}");
    }
    loud(format_args!(
        "note: sanitizers unavailable with {cc}; the kernel emulation runs without them ({})",
        sanitizer_error.lines().next().unwrap_or("")
    ));
    (plain, false)
}

#[test]
fn kernel_source_hashes_like_ring_when_run_on_the_host() {
    let Some(cc) = c_compiler() else {
        loud(format_args!(
            "NO C COMPILER: the CUDA kernel's host emulation test did not run"
        ));
        // CI images always have the compiler Rust links with: there, not running
        // is a failure, not a skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "no C compiler (cc, gcc, clang) found in CI"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (binary, sanitized) = build(&cc, dir.path());

    let cases = cases();
    let mut input = Vec::new();
    input.extend_from_slice(&(cases.len() as u64).to_le_bytes());
    for case in &cases {
        case.encode(&mut input);
    }
    let input_path = dir.path().join("cases.bin");
    let output_path = dir.path().join("hashes.bin");
    std::fs::write(&input_path, &input).unwrap();
    if let Err(e) = run(&binary, &input_path, &output_path) {
        panic!("{e}");
    }
    let output = std::fs::read(&output_path).unwrap();
    let expected_len: usize = cases.iter().map(Case::output_len).sum();
    assert_eq!(output.len(), expected_len, "hash bytes written");

    let mut offset = 0;
    let mut mismatches = String::new();
    let mut failed = 0usize;
    let mut hashes = 0usize;
    for case in &cases {
        for (i, want) in case.expected().iter().enumerate() {
            let got = &output[offset..offset + 32];
            offset += 32;
            hashes += 1;
            if got != want {
                failed += 1;
                if failed <= 10 {
                    let _ = writeln!(mismatches, "{} leaf +{i}", case.describe());
                }
            }
        }
    }
    assert_eq!(offset, output.len());
    assert_eq!(
        failed, 0,
        "{failed} of {hashes} kernel hashes differ from ring's; first ones:\n{mismatches}"
    );
    // The case list really covers what it claims (so the test cannot pass empty).
    assert!(cases.len() >= 1500, "{}", cases.len());
    assert!(cases.iter().any(|c| c.count > 128 && c.count % 128 != 0));
    assert!(cases.iter().any(|c| c.leaf_size == 1 << 20));
    assert!(cases.iter().any(|c| c.misalign != 0 && c.first_leaf > 0));
    loud(format_args!(
        "kernel host emulation: {} cases, {hashes} hashes match ring ({cc}, sanitizers {})",
        cases.len(),
        if sanitized { "on" } else { "off" }
    ));
}

/// Writes straight to the process's stderr, which the test harness does not
/// capture (it captures `eprintln!`): a check that did not run must say so in
/// every test run, not only under `--nocapture`.
fn loud(msg: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{msg}");
}
