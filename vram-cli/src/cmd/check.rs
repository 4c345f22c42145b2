//! `vram digest --check MANIFEST...`: check files against manifest lines, as
//! `sha256sum -c` does, and for a failed file say which bytes changed.
//!
//! Behaviour follows `sha256sum -c`: one `NAME: OK`, `NAME: FAILED` or
//! `NAME: FAILED open or read` line per listed file; improperly formatted
//! lines are counted (a warning on stderr) and skipped; exit 0 when every
//! listed file is OK, 1 when any failed or could not be read, or when a
//! manifest has no well-formed line. `--quiet`, `--status`,
//! `--ignore-missing` and `--strict` do what they do for `sha256sum -c`
//! (tests compare with it). A manifest line with leaf hashes
//! (`vram digest --json --leaves`) lets a failed file's corrupt byte ranges be
//! named, and the tensors in them when the file is a safetensors or GGUF
//! file (its header read by `vram_format`, the same verdict a lease gets).

use super::digest::{digest_path, NamedBy};
use crate::cli::DigestArgs;
use crate::exit::{io_error, one_safe_line, shown_path, CliError};
use crate::manifest::{parse_line, Entry, Expected};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use vram_crypto::{diff_leaves, LeafHashes, LeafSize};
use vram_format::{FormatError, TensorTable};
use vram_validation::OutputLine;

/// Longest manifest line read: a JSON line with leaf hashes takes 67 bytes
/// per leaf, so this covers a 4 TiB file at 1 MiB leaves.
const MAX_LINE_BYTES: usize = 256 << 20;
/// Tensors named per range in the human output (JSON has them all).
const SHOWN_TENSORS: usize = 8;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Failed,
    Missing,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::Missing => "missing",
        }
    }
}

/// Consecutive corrupt leaves as one byte range.
struct Corrupt {
    start: u64,
    end: u64,
    first_leaf: u64,
    last_leaf: u64,
    /// The range touches the file's header.
    header: bool,
    /// The header's format, when the file's header could be read.
    format: Option<vram_format::Format>,
    tensors: Vec<String>,
    /// Per tensor: the part of its bytes in the range, and its length.
    tensor_bytes: Vec<(String, u64, u64, u64)>,
}

struct Outcome {
    name: String,
    status: Status,
    note: Option<String>,
    ranges: Vec<Corrupt>,
}

impl Outcome {
    fn new(name: &str, status: Status) -> Self {
        Self {
            name: name.to_owned(),
            status,
            note: None,
            ranges: Vec::new(),
        }
    }

    fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    fn to_json(&self) -> serde_json::Value {
        let ranges: Vec<_> = self
            .ranges
            .iter()
            .map(|r| {
                serde_json::json!({
                    "start": r.start,
                    "end": r.end,
                    "leaves": [r.first_leaf, r.last_leaf],
                    "header": r.header,
                    "format": r.format.map(|f| f.to_string()),
                    "tensors": r.tensors,
                    "tensor_bytes": r.tensor_bytes.iter().map(|(name, start, end, len)| {
                        serde_json::json!({"name": name, "start": start, "end": end, "len": len})
                    }).collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::json!({
            "file": self.name,
            "status": self.status.as_str(),
            "note": self.note,
            "corrupt_ranges": ranges,
        })
    }

    /// The human lines: `NAME: OK|FAILED|FAILED open or read`, then one
    /// indented line per corrupt range and the note.
    fn print(&self) {
        let mut line = OutputLine::new();
        line.field(&self.name).push(match self.status {
            Status::Ok => ": OK",
            Status::Failed => ": FAILED",
            Status::Missing => ": FAILED open or read",
        });
        println!("{line}");
        for r in &self.ranges {
            let mut line = OutputLine::new();
            line.push(&format!("  corrupt bytes {}..{}", r.start, r.end));
            if r.first_leaf == r.last_leaf {
                line.push(&format!(" (leaf {})", r.first_leaf));
            } else {
                line.push(&format!(" (leaves {}-{})", r.first_leaf, r.last_leaf));
            }
            if r.header {
                let format = r.format.unwrap_or(vram_format::Format::Safetensors);
                line.push(&format!(": {format} header"));
            }
            if !r.tensors.is_empty() {
                line.push(if r.header { ", tensors " } else { ": tensors " });
                for (i, t) in r.tensors.iter().take(SHOWN_TENSORS).enumerate() {
                    if i > 0 {
                        line.push(", ");
                    }
                    line.field(t);
                }
                if r.tensors.len() > SHOWN_TENSORS {
                    line.push(&format!(
                        " and {} more",
                        r.tensors.len().saturating_sub(SHOWN_TENSORS)
                    ));
                }
            }
            println!("{line}");
        }
        if let Some(note) = &self.note {
            let mut line = OutputLine::new();
            line.push("  ").field(note);
            println!("{line}");
        }
    }
}

pub(crate) fn run(args: &DigestArgs, quiet: bool) -> Result<(), CliError> {
    let stdin_is_manifest = args.files.iter().any(|m| m.as_os_str() == "-");
    // `--status`: nothing on stdout and no warnings (errors still go to
    // stderr); `-q` leaves out the OK lines only, as `sha256sum --quiet`.
    let human = !args.json && !args.status;
    let warn = !quiet && !args.status;
    let mut outcomes = Vec::new();
    let mut malformed = 0u64;
    let mut listed = 0u64;
    // Manifests with no well-formed line, and (with --ignore-missing)
    // manifests where no listed file existed: each fails the run, as in
    // `sha256sum -c`.
    let mut empty_manifests = 0u64;
    let mut unverified_manifests = 0u64;
    for manifest in &args.files {
        let reader: Box<dyn BufRead> = if manifest.as_os_str() == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            let f = std::fs::File::open(manifest).map_err(|e| io_error(manifest, &e))?;
            if f.metadata().is_ok_and(|m| m.is_dir()) {
                return Err(CliError::usage(format!(
                    "{}: is a directory",
                    shown_path(manifest)
                )));
            }
            Box::new(BufReader::new(f))
        };
        let mut well_formed = 0u64;
        let mut verified = 0u64;
        each_line(reader, manifest, |n, line| {
            let entry = match line.map(parse_line) {
                Some(Ok(Some(e))) => e,
                Some(Ok(None)) => return,
                Some(Err(reason)) => {
                    malformed = malformed.saturating_add(1);
                    if warn {
                        eprintln!(
                            "vram: {}:{n}: improperly formatted line: {reason}",
                            shown_path(manifest)
                        );
                    }
                    return;
                }
                None => {
                    malformed = malformed.saturating_add(1);
                    if warn {
                        eprintln!(
                            "vram: {}:{n}: improperly formatted line: too long or not UTF-8",
                            shown_path(manifest)
                        );
                    }
                    return;
                }
            };
            well_formed = well_formed.saturating_add(1);
            if args.ignore_missing && does_not_exist(&entry.name) {
                return;
            }
            verified = verified.saturating_add(1);
            listed = listed.saturating_add(1);
            let outcome = check_entry(&entry, stdin_is_manifest, quiet);
            if human && !(quiet && outcome.status == Status::Ok) {
                outcome.print();
            }
            outcomes.push(outcome);
        })?;
        if well_formed == 0 {
            empty_manifests = empty_manifests.saturating_add(1);
            eprintln!(
                "vram: {}: no properly formatted vram digest lines found",
                shown_path(manifest)
            );
        } else if verified == 0 {
            unverified_manifests = unverified_manifests.saturating_add(1);
            if warn {
                eprintln!("vram: {}: no file was verified", shown_path(manifest));
            }
        }
    }
    let count = |s: Status| outcomes.iter().filter(|o| o.status == s).count();
    let (ok, failed, missing) = (
        count(Status::Ok),
        count(Status::Failed),
        count(Status::Missing),
    );
    if warn {
        if malformed > 0 {
            eprintln!("vram: WARNING: {malformed} line(s) improperly formatted");
        }
        if missing > 0 {
            eprintln!("vram: WARNING: {missing} listed file(s) could not be read");
        }
        if failed > 0 {
            eprintln!("vram: WARNING: {failed} computed digest(s) did NOT match");
        }
    }
    let verdict = if failed > 0 || missing > 0 {
        Err(CliError::integrity(format!(
            "{} of {listed} listed file(s) FAILED",
            failed.saturating_add(missing)
        )))
    } else if empty_manifests > 0 {
        Err(CliError::integrity(format!(
            "{empty_manifests} manifest(s) without a properly formatted vram digest line"
        )))
    } else if unverified_manifests > 0 {
        Err(CliError::integrity(format!(
            "no listed file of {unverified_manifests} manifest(s) exists (--ignore-missing)"
        )))
    } else if args.strict && malformed > 0 {
        Err(CliError::integrity(format!(
            "{malformed} line(s) improperly formatted (--strict)"
        )))
    } else {
        Ok(())
    };
    if args.json {
        let mut v = serde_json::json!({
            "files": outcomes.iter().map(Outcome::to_json).collect::<Vec<_>>(),
            "ok": ok,
            "failed": failed,
            "missing": missing,
            "malformed_lines": malformed,
        });
        if let (Err(e), Some(obj)) = (&verdict, v.as_object_mut()) {
            obj.insert("error".into(), e.to_json());
        }
        println!("{v:#}");
        return verdict.map_err(CliError::reported_in_json);
    }
    if args.status {
        // The exit code is the answer; no summary line on stderr.
        return verdict.map_err(CliError::silent);
    }
    verdict
}

/// Whether a listed file does not exist (`--ignore-missing`): what opening
/// it would report as "no such file", a dangling symlink included.
fn does_not_exist(name: &str) -> bool {
    name != "-" && std::fs::metadata(name).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
}

/// Calls `f(line_number, line)` for every line of `reader`, without its line
/// end; `None` for a line over [`MAX_LINE_BYTES`] or not UTF-8 (skipped in
/// bounded memory).
fn each_line(
    mut reader: impl BufRead,
    manifest: &Path,
    mut f: impl FnMut(u64, Option<&str>),
) -> Result<(), CliError> {
    let read_err =
        |e: std::io::Error| CliError::env(format!("{}: {}", shown_path(manifest), e.kind()));
    let mut buf = Vec::new();
    let limit = u64::try_from(MAX_LINE_BYTES).unwrap_or(u64::MAX);
    for n in 1u64.. {
        buf.clear();
        let got = (&mut reader)
            .take(limit)
            .read_until(b'\n', &mut buf)
            .map_err(read_err)?;
        if got == 0 {
            break;
        }
        if buf.last() != Some(&b'\n') && buf.len() >= MAX_LINE_BYTES {
            // Skip the rest of the long line.
            loop {
                let chunk = reader.fill_buf().map_err(read_err)?;
                if chunk.is_empty() {
                    break;
                }
                match chunk.iter().position(|b| *b == b'\n') {
                    Some(i) => {
                        reader.consume(i.saturating_add(1));
                        break;
                    }
                    None => {
                        let len = chunk.len();
                        reader.consume(len);
                    }
                }
            }
            f(n, None);
            continue;
        }
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        f(n, std::str::from_utf8(line).ok());
    }
    Ok(())
}

fn check_entry(entry: &Entry, stdin_is_manifest: bool, quiet: bool) -> Outcome {
    let name = entry.name.as_str();
    let path = Path::new(name);
    if stdin_is_manifest && name == "-" {
        return Outcome::new(name, Status::Missing)
            .note("standard input is the manifest, so it cannot also be a listed file");
    }
    let (leaf, sha) = match &entry.expected {
        Expected::Tree { leaf, .. } => (*leaf, false),
        Expected::Sha256(_) => (LeafSize::DEFAULT, true),
    };
    let got = match digest_path(path, leaf, sha, quiet, NamedBy::Manifest) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("vram: {}", one_safe_line(&e.message));
            return Outcome::new(name, Status::Missing).note(e.message);
        }
    };
    match &entry.expected {
        Expected::Sha256(want) => {
            if got.plain.is_some_and(|p| p.ct_eq(want)) {
                Outcome::new(name, Status::Ok)
            } else {
                Outcome::new(name, Status::Failed).note(
                    "the SHA-256 differs; a manifest of tree digests with leaf hashes (vram digest --json --leaves) locates the corrupt bytes",
                )
            }
        }
        Expected::Tree {
            root,
            bytes,
            leaves,
            ..
        } => {
            let tree = got.leaves.root();
            if tree.root.ct_eq(root) {
                return Outcome::new(name, Status::Ok);
            }
            let failed = Outcome::new(name, Status::Failed);
            let found = tree.descriptor.total_len;
            match (leaves, bytes) {
                (_, Some(expected)) if *expected != found => failed.note(format!(
                    "the size changed: {expected} bytes listed, {found} bytes found"
                )),
                (Some(expected), _) => locate(failed, path, expected, &got.leaves),
                (None, _) => failed.note(
                    "the manifest has only the root: write it with `vram digest --json --leaves` to locate the corrupt byte ranges",
                ),
            }
        }
    }
}

/// Fills in the corrupt ranges of a failed file (and the safetensors tensors
/// they hold).
fn locate(mut out: Outcome, path: &Path, expected: &LeafHashes, actual: &LeafHashes) -> Outcome {
    let diff = match diff_leaves(expected, actual) {
        Ok(d) => d,
        Err(e) => return out.note(format!("cannot compare the leaves: {e}")),
    };
    for d in diff {
        match out.ranges.last_mut() {
            Some(last) if last.end == d.start => {
                last.end = d.end;
                last.last_leaf = d.leaf_index;
            }
            _ => out.ranges.push(Corrupt {
                start: d.start,
                end: d.end,
                first_leaf: d.leaf_index,
                last_leaf: d.leaf_index,
                header: false,
                format: None,
                tensors: Vec::new(),
                tensor_bytes: Vec::new(),
            }),
        }
    }
    if path.as_os_str() == "-" || out.ranges.is_empty() {
        return out;
    }
    match read_table(path) {
        Ok(table) => {
            for r in &mut out.ranges {
                r.header = r.start < table.data_start();
                r.format = Some(table.format());
                for (t, inside) in table.locate(r.start..r.end) {
                    r.tensors.push(t.name.clone());
                    r.tensor_bytes
                        .push((t.name.clone(), inside.start, inside.end, t.len()));
                }
            }
        }
        Err(reason) => {
            // Any file is tried; only one named as a model file is worth a note.
            let named = path.extension().is_some_and(|e| {
                e.eq_ignore_ascii_case("safetensors") || e.eq_ignore_ascii_case("gguf")
            });
            if named {
                out = out.note(format!("tensors not named: {reason}"));
            }
        }
    }
    out
}

/// The file's tensor table, read as a lease reads it (the same parser,
/// only the header's bytes).
fn read_table(path: &Path) -> Result<TensorTable, String> {
    let file = std::fs::File::open(path).map_err(|e| e.kind().to_string())?;
    let len = file.metadata().map_err(|e| e.kind().to_string())?.len();
    let read_prefix = |n: u64| -> Result<Vec<u8>, String> {
        use std::os::unix::fs::FileExt;
        let n =
            usize::try_from(n.min(len)).map_err(|_| "a header larger than memory".to_owned())?;
        let mut buf = vec![0u8; n];
        file.read_exact_at(&mut buf, 0)
            .map_err(|e| e.kind().to_string())?;
        Ok(buf)
    };
    vram_format::read_table(len, |n| read_prefix(n).map_err(|reason| Wrap(Err(reason)))).map_err(
        |Wrap(e)| match e {
            Ok(f) => f.to_string(),
            Err(reason) => reason,
        },
    )
}

/// A header error or a read error.
struct Wrap(Result<FormatError, String>);

impl From<FormatError> for Wrap {
    fn from(e: FormatError) -> Self {
        Self(Ok(e))
    }
}
