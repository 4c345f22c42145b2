//! `vram digest` manifests and `vram digest --check`, as an operator uses
//! them: write a manifest, change a file, find out which bytes (and which
//! safetensors tensors) changed. Also: errors under `--json` are JSON.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::OutputWithin as _;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn vram(dir: &Path) -> Command {
    let mut c = common::vram_process();
    c.current_dir(dir);
    c
}

fn run(dir: &Path, args: &[&str]) -> Output {
    vram(dir).args(args).output_within(common::PATIENCE)
}

fn run_stdin(dir: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut child = vram(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    common::wait_within(child, common::PATIENCE)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}): {}\nstderr: {}",
            stdout(o),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 131 % 251) as u8).wrapping_add(seed))
        .collect()
}

/// A safetensors file: tensor `a` of 8192 bytes, `b` of 16384, `c` of 4096.
fn safetensors(path: &Path) -> u64 {
    let header = br#"{"__metadata__":{"format":"pt"},"a":{"dtype":"U8","shape":[8192],"data_offsets":[0,8192]},"b":{"dtype":"U8","shape":[16384],"data_offsets":[8192,24576]},"c":{"dtype":"U8","shape":[4096],"data_offsets":[24576,28672]}}"#;
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header);
    out.extend_from_slice(&bytes(28672, 3));
    std::fs::write(path, &out).unwrap();
    8 + header.len() as u64
}

fn flip(path: &Path, at: u64) {
    let mut b = std::fs::read(path).unwrap();
    b[at as usize] ^= 0xff;
    std::fs::write(path, b).unwrap();
}

#[test]
fn digest_lines_carry_algorithm_and_leaf_size_and_check_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("a.bin"), bytes(100_000, 1)).unwrap();
    std::fs::write(d.join("b c.bin"), bytes(5_000, 2)).unwrap();
    let out = run(d, &["digest", "--leaf-size", "4KiB", "a.bin", "b c.bin"]);
    assert!(out.status.success(), "{out:?}");
    let manifest = stdout(&out);
    let lines: Vec<&str> = manifest.lines().collect();
    assert_eq!(lines.len(), 2, "{manifest}");
    let tree = vram_crypto::tree_digest(
        &bytes(100_000, 1),
        vram_crypto::LeafSize::new(4096).unwrap(),
    );
    assert_eq!(
        lines[0],
        format!("vram-tree-sha256:4KiB:{}  a.bin", tree.root)
    );
    assert!(lines[1].starts_with("vram-tree-sha256:4KiB:") && lines[1].ends_with("  b c.bin"));
    std::fs::write(d.join("MANIFEST"), &manifest).unwrap();

    let out = run(d, &["digest", "-c", "MANIFEST"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(stdout(&out), "a.bin: OK\nb c.bin: OK\n");

    // The manifest from standard input, a file changed, one deleted.
    flip(&d.join("a.bin"), 50_000);
    std::fs::remove_file(d.join("b c.bin")).unwrap();
    let out = run_stdin(d, &["digest", "--check", "-"], manifest.as_bytes());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = stdout(&out);
    assert!(text.starts_with("a.bin: FAILED\n"), "{text}");
    assert!(
        text.contains("only the root"),
        "no ranges without leaves: {text}"
    );
    assert!(text.contains("b c.bin: FAILED open or read\n"), "{text}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1 computed digest(s) did NOT match"), "{err}");
    assert!(err.contains("1 listed file(s) could not be read"), "{err}");
}

#[test]
fn a_plain_sha256sum_line_is_not_taken_for_a_tree_digest() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("m.bin"), bytes(10_000, 0)).unwrap();
    let sha = ring::digest::digest(&ring::digest::SHA256, &bytes(10_000, 0));
    let hex: String = sha.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(d.join("SUMS"), format!("{hex}  m.bin\n")).unwrap();
    let out = run(d, &["digest", "-c", "SUMS"]);
    // No valid line at all: exit 1, as `sha256sum -c`.
    assert_eq!(out.status.code(), Some(1), "no valid line at all: {out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("improperly formatted"));

    // `--sha256` writes `sha256:HEX  NAME`, which -c checks; a bad line among
    // good ones is counted, not fatal.
    let out = run(d, &["digest", "--sha256", "m.bin"]);
    let text = stdout(&out);
    assert!(text.contains(&format!("sha256:{hex}  m.bin\n")), "{text}");
    std::fs::write(d.join("M2"), format!("{text}garbage line\n")).unwrap();
    let out = run(d, &["digest", "-c", "M2"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(stdout(&out), "m.bin: OK\nm.bin: OK\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 line(s) improperly formatted"));
    flip(&d.join("m.bin"), 0);
    let out = run(d, &["digest", "-c", "M2"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out).matches("m.bin: FAILED").count(),
        2,
        "{}",
        stdout(&out)
    );
}

#[test]
fn leaves_in_the_manifest_locate_corrupt_ranges_and_name_safetensors_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data_start = safetensors(&d.join("model.safetensors"));
    std::fs::write(d.join("plain.bin"), bytes(40_000, 9)).unwrap();
    let out = run(
        d,
        &[
            "digest",
            "--json",
            "--leaves",
            "--leaf-size",
            "4KiB",
            "model.safetensors",
            "plain.bin",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let manifest = stdout(&out);
    assert_eq!(manifest.lines().count(), 2, "JSON lines: {manifest}");
    for line in manifest.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["algorithm"], "vram-tree-sha256");
        assert_eq!(
            v["leaves"].as_array().unwrap().len() as u64,
            v["leaf_count"].as_u64().unwrap()
        );
    }
    std::fs::write(d.join("MANIFEST.jsonl"), &manifest).unwrap();
    let out = run(d, &["digest", "-c", "MANIFEST.jsonl"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // Corrupt a byte of tensor `b` (which spans leaves) and one in the
    // header that leaves it readable (`"pt"` becomes `"qt"`).
    let in_b = data_start + 8192 + 5000;
    flip(&d.join("model.safetensors"), in_b);
    let mut raw = std::fs::read(d.join("model.safetensors")).unwrap();
    let at = raw.windows(4).position(|w| w == b"\"pt\"").unwrap();
    raw[at + 1] = b'q';
    std::fs::write(d.join("model.safetensors"), raw).unwrap();
    flip(&d.join("plain.bin"), 39_999);
    let out = run(d, &["digest", "-c", "--json", "MANIFEST.jsonl"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let v = json(&out);
    assert_eq!(v["ok"], 0);
    assert_eq!(v["failed"], 2);
    assert_eq!(v["error"]["code"], 1);
    assert_eq!(v["error"]["class"], "integrity");
    let files = v["files"].as_array().unwrap();
    assert_eq!(files[0]["file"], "model.safetensors");
    assert_eq!(files[0]["status"], "failed");
    let ranges = files[0]["corrupt_ranges"].as_array().unwrap();
    assert_eq!(ranges.len(), 2, "{v:#}");
    // The header's leaf: the header itself, and tensor `a` begins in it.
    assert_eq!(ranges[0]["start"], 0);
    assert_eq!(ranges[0]["end"], 4096);
    assert_eq!(ranges[0]["header"], true);
    assert_eq!(ranges[0]["tensors"], serde_json::json!(["a"]));
    let leaf = in_b / 4096;
    assert_eq!(ranges[1]["start"], leaf * 4096);
    assert_eq!(ranges[1]["end"], leaf * 4096 + 4096);
    assert_eq!(ranges[1]["leaves"], serde_json::json!([leaf, leaf]));
    assert_eq!(ranges[1]["tensors"], serde_json::json!(["b"]));
    // A file that is not safetensors: the range, no tensors.
    assert_eq!(files[1]["file"], "plain.bin");
    let ranges = files[1]["corrupt_ranges"].as_array().unwrap();
    assert_eq!(ranges.len(), 1);
    assert_eq!(ranges[0]["start"], 36_864);
    assert_eq!(ranges[0]["end"], 40_000);
    assert_eq!(ranges[0]["tensors"], serde_json::json!([]));

    // The same in words.
    let out = run(d, &["digest", "-c", "MANIFEST.jsonl"]);
    let text = stdout(&out);
    assert!(text.contains("model.safetensors: FAILED\n"), "{text}");
    assert!(
        text.contains("  corrupt bytes 0..4096 (leaf 0): safetensors header, tensors a\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "  corrupt bytes {}..{} (leaf {leaf}): tensors b\n",
            leaf * 4096,
            leaf * 4096 + 4096
        )),
        "{text}"
    );
    assert!(
        text.contains("plain.bin: FAILED\n  corrupt bytes 36864..40000 (leaf 9)\n"),
        "{text}"
    );

    // A header damaged beyond reading: the ranges, and a note why no tensors.
    flip(&d.join("model.safetensors"), 12);
    let out = run(d, &["digest", "-c", "MANIFEST.jsonl"]);
    let text = stdout(&out);
    assert!(
        text.contains("  corrupt bytes 0..4096 (leaf 0)\n"),
        "{text}"
    );
    assert!(
        text.contains("  tensors not named: not a valid safetensors header"),
        "{text}"
    );
}

#[test]
fn standard_input_is_digested_and_hostile_names_stay_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = bytes(70_000, 4);
    let out = run_stdin(d, &["digest", "-"], &data);
    assert!(out.status.success(), "{out:?}");
    let tree = vram_crypto::tree_digest(&data, vram_crypto::LeafSize::DEFAULT);
    assert_eq!(
        stdout(&out),
        format!("vram-tree-sha256:1MiB:{}  -\n", tree.root)
    );

    let hostile = "evil\u{1b}]0;x\u{7}\nforged.bin";
    std::fs::write(d.join(hostile), &data).unwrap();
    let out = run(d, &["digest", hostile]);
    let line = stdout(&out);
    assert_eq!(line.lines().count(), 1, "{line:?}");
    assert!(
        line.starts_with('\\') && !line.contains('\u{1b}'),
        "{line:?}"
    );
    std::fs::write(d.join("M"), &line).unwrap();
    let out = run(d, &["digest", "-c", "M"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the escaped name is read back: {out:?}"
    );
    assert_eq!(stdout(&out), "\\evil\\u{1b}]0;x\\u{7}\\nforged.bin: OK\n");
}

#[test]
fn errors_under_json_are_one_json_document_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("m.bin"), bytes(1000, 0)).unwrap();
    // A usage error: bad leaf size.
    let out = run(d, &["digest", "--json", "--leaf-size", "3KiB", "m.bin"]);
    assert_eq!(out.status.code(), Some(2));
    let v = json(&out);
    assert_eq!(v["error"]["code"], 2);
    assert_eq!(v["error"]["class"], "usage");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("--leaf-size"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("vram: error:"));
    // A missing file: the file's line carries the error.
    let out = run(d, &["digest", "--json", "missing.bin"]);
    assert_eq!(out.status.code(), Some(2));
    let v = json(&out);
    assert_eq!(v["file"], "missing.bin");
    assert_eq!(v["error"]["code"], 2);
    // An environment error: no worker secret, for seal and audit verify.
    let out = run(d, &["seal", "--json", "--device", "mock", "m.bin"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let v = json(&out);
    assert_eq!(v["error"]["code"], 3);
    assert_eq!(v["error"]["class"], "environment");
    let out = run(d, &["audit", "verify", "--json", "no-such.log"]);
    assert_eq!(json(&out)["error"]["code"], 2);
    // A manifest that does not exist; an unknown flag clap refuses.
    let out = run(d, &["digest", "-c", "--json", "NOPE"]);
    assert_eq!(json(&out)["error"]["class"], "usage");
    let out = run(d, &["devices", "--json", "--bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(json(&out)["error"]["class"], "usage");
    // Without --json, stdout stays empty on error.
    let out = run(d, &["digest", "--leaf-size", "3KiB", "m.bin"]);
    assert!(out.stdout.is_empty());
}

/// A regular file is hashed through a read-only map, standard input through
/// the chunk stream: both give the library's tree digest and ring's plain
/// SHA-256 for every length around the leaf edges, with and without
/// `--sha256` (whose plain stream runs beside the leaves).
#[test]
fn a_mapped_file_and_standard_input_give_the_library_s_digests() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let leaf = vram_crypto::LeafSize::new(4096).unwrap();
    let lens = [0usize, 1, 4095, 4096, 4097, 3 * 4096 + 5, 600_000];
    for len in lens.into_iter().chain([2_500_001]) {
        let data = bytes(len, 9);
        std::fs::write(d.join("m.bin"), &data).unwrap();
        let want_tree = vram_crypto::tree_digest(&data, leaf).root.to_string();
        let want_sha = vram_crypto::sha256(&data).to_string();
        for sha in [false, true] {
            let mut args = vec!["digest", "--json", "--leaf-size", "4KiB"];
            if sha {
                args.push("--sha256");
            }
            let from_file = run(d, &[args.as_slice(), &["m.bin"]].concat());
            let from_stdin = run_stdin(d, &[args.as_slice(), &["-"]].concat(), &data);
            for (how, out) in [("file", &from_file), ("stdin", &from_stdin)] {
                assert!(out.status.success(), "{how} {len}: {out:?}");
                let v = json(out);
                assert_eq!(v["tree_digest"], want_tree.as_str(), "{how} {len}");
                assert_eq!(v["bytes"], len as u64, "{how} {len}");
                if sha {
                    assert_eq!(v["sha256"], want_sha.as_str(), "{how} {len}");
                } else {
                    assert!(v.get("sha256").is_none(), "{how} {len}");
                }
            }
        }
    }
}

/// The same checks written for `sha256sum -c` (`HEX  NAME`) and for
/// `vram digest -c` (`sha256:HEX  NAME`): a good file, a changed one, a
/// malformed line, a missing file, in the combinations below.
fn sha256sum_cases(d: &Path) -> Vec<(&'static str, Vec<String>)> {
    std::fs::write(d.join("a"), b"a\n").unwrap();
    std::fs::write(d.join("b"), b"b\n").unwrap();
    let hex = |bytes: &[u8]| -> String {
        let sha = ring::digest::digest(&ring::digest::SHA256, bytes);
        sha.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    };
    let a = hex(b"a\n");
    let b = hex(b"b\n");
    let zero = "0".repeat(64);
    let good = vec![format!("{a}  a"), format!("{b}  b")];
    let mixed = vec![
        format!("{a}  a"),
        format!("{zero}  b"),
        "garbage".to_owned(),
        format!("{a}  missing"),
    ];
    let bad = vec!["garbage".to_owned()];
    let only_missing = vec![format!("{a}  missing")];
    let with_bad = vec![format!("{a}  a"), "garbage".to_owned()];
    vec![
        ("good", good),
        ("mixed", mixed),
        ("bad", bad),
        ("only-missing", only_missing),
        ("with-bad", with_bad),
    ]
}

/// Writes each case twice: `NAME.sums` for sha256sum, `NAME.vram` for vram.
fn write_sha256sum_cases(d: &Path) -> Vec<&'static str> {
    let mut names = Vec::new();
    for (name, lines) in sha256sum_cases(d) {
        let vram_lines: Vec<String> = lines
            .iter()
            .map(|l| {
                if l.len() > 64 && l.as_bytes()[64] == b' ' {
                    format!("sha256:{l}")
                } else {
                    l.clone()
                }
            })
            .collect();
        std::fs::write(d.join(format!("{name}.sums")), lines.join("\n") + "\n").unwrap();
        std::fs::write(d.join(format!("{name}.vram")), vram_lines.join("\n") + "\n").unwrap();
        names.push(name);
    }
    names
}

/// The lines that say a file's verdict (`NAME: OK`, `NAME: FAILED`, ...),
/// without vram's indented details (corrupt ranges, notes).
fn verdict_lines(o: &Output) -> Vec<String> {
    stdout(o)
        .lines()
        .filter(|l| !l.starts_with(' '))
        .map(String::from)
        .collect()
}

const CHECK_FLAGS: &[&[&str]] = &[
    &[],
    &["--quiet"],
    &["--status"],
    &["--strict"],
    &["--ignore-missing"],
    &["--status", "--strict"],
    &["--quiet", "--ignore-missing"],
];

#[test]
fn check_flags_and_exit_codes_are_sha256sums() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_sha256sum_cases(d);
    let check = |flags: &[&str], manifests: &[&str]| {
        let mut args = vec!["digest", "-c"];
        args.extend_from_slice(flags);
        args.extend_from_slice(manifests);
        run(d, &args)
    };
    // What `sha256sum -c` (GNU coreutils 9.1) does, written down, so the
    // test means the same where sha256sum is not installed.
    let ok = check(&["--quiet"], &["good.vram"]);
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    assert_eq!(stdout(&ok), "", "--quiet prints no OK line");
    let out = check(&["--status"], &["mixed.vram"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "", "--status prints nothing on stdout");
    let out = check(&["--quiet"], &["mixed.vram"]);
    assert_eq!(
        verdict_lines(&out),
        ["b: FAILED", "missing: FAILED open or read"]
    );
    // No well-formed line: 1, not 2; in a list of manifests too.
    assert_eq!(check(&[], &["bad.vram"]).status.code(), Some(1));
    let out = check(&[], &["bad.vram", "good.vram"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(verdict_lines(&out), ["a: OK", "b: OK"]);
    // --ignore-missing skips a missing file, but a manifest of which no file
    // exists fails.
    let out = check(&["--ignore-missing"], &["only-missing.vram"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    let out = check(&["--ignore-missing"], &["good.vram", "with-bad.vram"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // --strict: a malformed line fails the run.
    assert_eq!(check(&[], &["with-bad.vram"]).status.code(), Some(0));
    assert_eq!(
        check(&["--strict"], &["with-bad.vram"]).status.code(),
        Some(1)
    );

    // Where sha256sum is installed: the same exit code and verdict lines,
    // case by case.
    let Ok(sha256sum) = Command::new("sha256sum")
        .arg("--version")
        .try_output_within(common::PATIENCE)
    else {
        return;
    };
    if !sha256sum.status.success() {
        return;
    }
    let names = ["good", "mixed", "bad", "only-missing", "with-bad"];
    let mut pairs: Vec<Vec<&str>> = names.iter().map(|n| vec![*n]).collect();
    pairs.push(vec!["bad", "good"]);
    pairs.push(vec!["good", "with-bad"]);
    for flags in CHECK_FLAGS {
        for manifests in &pairs {
            let sums: Vec<String> = manifests.iter().map(|m| format!("{m}.sums")).collect();
            let ours: Vec<String> = manifests.iter().map(|m| format!("{m}.vram")).collect();
            let want = Command::new("sha256sum")
                .arg("-c")
                .args(*flags)
                .args(&sums)
                .current_dir(d)
                .output_within(common::PATIENCE);
            let ours: Vec<&str> = ours.iter().map(String::as_str).collect();
            let got = check(flags, &ours);
            assert_eq!(
                got.status.code(),
                want.status.code(),
                "{flags:?} {manifests:?}: vram {got:?}, sha256sum {want:?}"
            );
            assert_eq!(
                verdict_lines(&got),
                verdict_lines(&want),
                "{flags:?} {manifests:?}"
            );
            if flags.contains(&"--status") {
                assert_eq!(stdout(&got), "", "{flags:?} {manifests:?}");
            }
        }
    }
}

#[test]
fn a_fifo_in_a_manifest_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("a"), bytes(5000, 1)).unwrap();
    let manifest = run(d, &["digest", "a"]);
    assert_eq!(manifest.status.code(), Some(0), "{manifest:?}");
    // A FIFO with no writer, listed under a name of its own and put in
    // place of a listed file: opening either for reading would wait for a
    // writer for ever.
    let made = Command::new("mkfifo")
        .arg(d.join("pipe"))
        .output_within(common::PATIENCE);
    assert!(made.status.success(), "mkfifo: {made:?}");
    let line = stdout(&manifest);
    let pipe_line = line.replacen(" a\n", " pipe\n", 1);
    assert_ne!(pipe_line, line, "{line}");
    std::fs::write(d.join("m.vram"), format!("{line}{pipe_line}")).unwrap();
    let out = run(d, &["digest", "-c", "m.vram"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(verdict_lines(&out), ["a: OK", "pipe: FAILED open or read"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is a FIFO"), "{err}");
    // --ignore-missing skips files that do not exist, not a FIFO.
    let out = run(d, &["digest", "-c", "--ignore-missing", "m.vram"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    // The FIFO replacing a listed file.
    std::fs::remove_file(d.join("a")).unwrap();
    std::fs::rename(d.join("pipe"), d.join("a")).unwrap();
    let out = run(d, &["digest", "-c", "m.vram"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        verdict_lines(&out).contains(&"a: FAILED open or read".to_owned()),
        "{out:?}"
    );
    // Named on the command line, a pipe is still read to its end.
    let out = run_stdin(d, &["digest", "/dev/stdin"], &bytes(5000, 1));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        stdout(&out).split_whitespace().next(),
        line.split_whitespace().next()
    );
}
