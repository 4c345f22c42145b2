//! The audit verifier on hostile input.
//!
//! The first input byte picks a mode:
//!
//! * even: the rest is arbitrary bytes, split into lines and verified both in
//!   memory (`verify_lines`) and from a file (`verify_chain`); the first line is
//!   also tried as a checkpoint. Neither may panic, every finding must point at
//!   a line that exists, and the two paths must agree on well-formed text.
//! * odd: the rest drives edits (flip, insert or delete a byte; swap,
//!   duplicate or delete a line) of a valid chain written once by
//!   `AuditLog::in_memory`. Verified against its head checkpoint, the chain
//!   must be reported intact exactly when the edits left it unchanged.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vram_audit::{
    verify_chain, verify_lines, AuditEvent, AuditKey, AuditLog, AuditSink, ByteRange, Checkpoint,
    VerifyReport,
};

const KEY: [u8; 32] = [0x5a; 32];

fn key() -> AuditKey {
    AuditKey::from_bytes(KEY)
}

struct Chain {
    /// The file form: every record followed by `\n`.
    bytes: Vec<u8>,
    lines: Vec<String>,
    head: Checkpoint,
}

fn chain() -> &'static Chain {
    static CHAIN: OnceLock<Chain> = OnceLock::new();
    CHAIN.get_or_init(|| {
        let log = AuditLog::in_memory(key(), "fuzz-worker").unwrap();
        let events = [
            AuditEvent::VramAllocated {
                shard_id: "llama-7b-0".into(),
                gpu_device: 0,
                bytes: 1 << 30,
            },
            AuditEvent::VramSealed {
                shard_id: "llama-7b-0".into(),
                model_ref: "hf:org/llama@main/model.safetensors".into(),
                gpu_device: 0,
                device_kind: "mock".into(),
                vram_bytes: 1 << 30,
                tree_digest: "ab".repeat(32),
                leaf_size: 1 << 20,
                key_id: "0123456789abcdef".into(),
                provenance: None,
            },
            AuditEvent::SealVerificationFailed {
                shard_id: "llama-7b-0".into(),
                gpu_device: 0,
                policy: "full".into(),
                reason: "2 corrupt leaves".into(),
                corrupt_ranges: vec![
                    ByteRange {
                        start: 0,
                        end: 4096,
                    },
                    ByteRange {
                        start: 1 << 20,
                        end: 1 << 21,
                    },
                ],
            },
            AuditEvent::VramDeallocated {
                shard_id: "llama-7b-0".into(),
                gpu_device: 0,
                bytes: 1 << 30,
            },
        ];
        for e in events {
            log.record(e).unwrap();
        }
        let lines = log.lines();
        let head = log.head().unwrap();
        let report = verify_lines(&lines, &key(), Some(&head));
        assert!(report.is_intact(), "fresh chain: {:?}", report.findings);
        let mut bytes = Vec::new();
        for l in &lines {
            bytes.extend_from_slice(l.as_bytes());
            bytes.push(b'\n');
        }
        Chain { bytes, lines, head }
    })
}

/// Lines as a file reader sees them: split at `\n`, a final `\n` ends the
/// last line rather than starting an empty one.
fn split_lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        lines.pop();
    }
    lines
}

fn to_strings(lines: &[&[u8]]) -> Vec<String> {
    lines
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect()
}

/// The file one input is verified from: removed as soon as it has been read
/// (and when a panic unwinds), so no run leaves files in the temp directory.
struct ScratchFile(PathBuf);

impl ScratchFile {
    fn write(bytes: &[u8]) -> Self {
        let path =
            std::env::temp_dir().join(format!("vram-fuzz-audit-{}.jsonl", std::process::id()));
        let file = Self(path);
        std::fs::write(&file.0, bytes).unwrap();
        file
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn verify_file(bytes: &[u8], checkpoint: Option<&Checkpoint>) -> VerifyReport {
    let scratch = ScratchFile::write(bytes);
    let report = verify_chain(std::slice::from_ref(&scratch.0), &key(), checkpoint).unwrap();
    drop(scratch);
    report
}

fn check_report(report: &VerifyReport, line_count: usize) {
    let lines = u64::try_from(line_count).unwrap();
    assert!(
        report.records <= lines,
        "{} records from {lines} lines",
        report.records
    );
    // The head is the last record linked to the start: none without records.
    assert!(report.head.is_none() || report.records > 0);
    assert!(report.bad_lines <= lines);
    assert_eq!(
        report.findings_total,
        u64::try_from(report.findings.len()).unwrap() + report.findings_omitted
    );
    for f in &report.findings {
        assert!(
            f.line <= f.last_line && f.last_line <= lines,
            "finding at lines {}-{} of {lines}: {f}",
            f.line,
            f.last_line
        );
        assert_eq!(f.count, f.last_line - f.line + 1, "{f}");
        let _ = f.to_string();
    }
}

/// The findings as (line, kind), without the file name.
fn findings(report: &VerifyReport) -> Vec<(u64, String)> {
    report
        .findings
        .iter()
        .map(|f| (f.line, format!("{:?}", f.kind)))
        .collect()
}

fn arbitrary(data: &[u8]) {
    let raw = split_lines(data);
    let lines = to_strings(&raw);
    let checkpoint = lines.first().and_then(|l| l.parse::<Checkpoint>().ok());
    if let Some(cp) = &checkpoint {
        assert!(cp.seq > 0);
        assert_eq!(cp.to_string().parse::<Checkpoint>().unwrap(), *cp);
    }
    let memory = verify_lines(&lines, &key(), checkpoint.as_ref());
    check_report(&memory, lines.len());
    let file = verify_file(data, checkpoint.as_ref());
    // A torn tail counts as a line for the file reader, too.
    check_report(&file, raw.len());
    if std::str::from_utf8(data).is_ok() && (data.is_empty() || data.ends_with(b"\n")) {
        assert_eq!(file.records, memory.records);
        assert_eq!(file.head, memory.head);
        assert_eq!(findings(&file), findings(&memory));
    }
}

/// Applies one edit per 4 input bytes to `bytes`.
fn mutate(bytes: &mut Vec<u8>, ops: &[u8]) {
    for op in ops.chunks_exact(4).take(16) {
        let (kind, a, b, value) = (op[0] % 6, op[1], op[2], op[3]);
        let at = usize::from(u16::from_le_bytes([a, b])) % (bytes.len() + 1);
        match kind {
            0 if at < bytes.len() => bytes[at] ^= value,
            1 => bytes.insert(at, value),
            2 if at < bytes.len() => {
                bytes.remove(at);
            }
            3..=5 => {
                let ends_in_newline = bytes.ends_with(b"\n");
                let mut lines: Vec<Vec<u8>> =
                    split_lines(bytes).into_iter().map(<[u8]>::to_vec).collect();
                if lines.is_empty() {
                    continue;
                }
                let i = usize::from(a) % lines.len();
                let j = usize::from(b) % lines.len();
                match kind {
                    3 => lines.swap(i, j),
                    4 => {
                        let copy = lines[i].clone();
                        lines.insert(j, copy);
                    }
                    _ => {
                        lines.remove(i);
                    }
                }
                *bytes = lines.join(&b'\n');
                if ends_in_newline && !bytes.is_empty() {
                    bytes.push(b'\n');
                }
            }
            _ => {}
        }
    }
}

fn mutated_chain(ops: &[u8]) {
    let chain = chain();
    let mut bytes = chain.bytes.clone();
    mutate(&mut bytes, ops);

    let raw = split_lines(&bytes);
    let lines = to_strings(&raw);
    let memory = verify_lines(&lines, &key(), Some(&chain.head));
    check_report(&memory, lines.len());
    if lines == chain.lines {
        assert!(memory.is_intact(), "unchanged chain: {:?}", memory.findings);
    } else {
        assert!(
            !memory.is_intact(),
            "edited chain reported intact: {:?}",
            String::from_utf8_lossy(&bytes)
        );
    }

    let file = verify_file(&bytes, Some(&chain.head));
    check_report(&file, raw.len());
    assert_eq!(
        file.is_intact(),
        bytes == chain.bytes,
        "file verdict {:?} for {:?}",
        file.findings,
        String::from_utf8_lossy(&bytes)
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        arbitrary(rest);
    } else {
        mutated_chain(rest);
    }
});
