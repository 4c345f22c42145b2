//! `vram audit verify LOG...`: check a chain; exit 0 only when intact.

use super::audit_key;
use crate::cli::AuditVerifyArgs;
use crate::exit::CliError;
use vram_residency::vram_audit::{segment_files, verify_chain_with, Checkpoint, VerifyOptions};
use vram_residency::vram_validation::OutputLine;

pub(crate) fn verify(args: &AuditVerifyArgs) -> Result<(), CliError> {
    let checkpoint: Option<Checkpoint> = args
        .checkpoint
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|_| {
            CliError::usage(
                "--checkpoint: expected SEQ:HASH or SEQ:HASH:LOG_ID (decimal sequence, 64 hex, 32 hex)",
            )
        })?;
    for p in &args.logs {
        let meta = std::fs::metadata(p).map_err(|e| crate::exit::io_error(p, &e))?;
        if meta.is_dir() {
            return Err(CliError::usage(format!(
                "{}: is a directory",
                crate::exit::shown_path(p)
            )));
        }
    }
    // One path names a rotated log by its base: take every segment, in order.
    let files = match args.logs.as_slice() {
        [base] => segment_files(base).map_err(|e| CliError::env(format!("audit verify: {e}")))?,
        many => many.to_vec(),
    };
    let secret = crate::secret::load(args.secret_file.as_deref())?;
    let key = audit_key(&secret);
    let mut options = VerifyOptions::default();
    options.checkpoint = checkpoint;
    options.max_findings = args.max_findings;
    options.allow_empty = args.allow_empty;
    // Memory is bounded by `max_findings`, not by the log: findings past it are
    // only counted, and a run of bad lines is one finding.
    let report = verify_chain_with(&files, &key, &options)
        .map_err(|e| CliError::env(format!("audit verify: {e}")))?;
    if args.json {
        let v = serde_json::json!({
            "intact": report.is_intact(),
            "records": report.records,
            "bad_lines": report.bad_lines,
            "files": report.files,
            "format": report.format,
            "log_id": report.log_id,
            "head": report.head.as_ref().map(ToString::to_string),
            "genesis": report.genesis,
            "findings_total": report.findings_total,
            "findings_omitted": report.findings_omitted,
            "findings": report.findings,
        });
        println!("{v:#}");
    } else {
        for f in &report.findings {
            // A finding names a file and may quote what it found: escaped.
            let mut line = OutputLine::new();
            line.field(&f.to_string());
            println!("{line}");
        }
        if report.findings_omitted > 0 {
            println!(
                "... and {} more finding(s) not shown (--max-findings {})",
                report.findings_omitted, args.max_findings
            );
        }
        let head = report
            .head
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_else(|| "-".into());
        match (&report.genesis, report.format) {
            (Some(g), Some(2)) => println!(
                "log id {} (format 2: bound into every record; audit key id {})",
                g.log_id, g.key_id
            ),
            (Some(g), _) => println!(
                "log id {} (format {}: not bound into the records; audit key id {})",
                g.log_id, g.format, g.key_id
            ),
            (None, Some(2)) => println!(
                "log id {} (format 2; the genesis record is not in these files)",
                report.log_id.as_deref().unwrap_or("-")
            ),
            (None, Some(_)) => println!(
                "note: format 1 log without a genesis record: no log identity (written before genesis records existed, or begins with a record that is not one)"
            ),
            (None, None) => {}
        }
        if report.format == Some(1) && report.genesis.is_some() {
            println!(
                "note: format 1 log: its records are not bound to its log id; only a checkpoint tells it apart from another log under the same key"
            );
        }
        if report.is_intact() {
            println!(
                "intact: {} record(s) in {} file(s); head {head}",
                report.records, report.files
            );
        } else {
            println!(
                "NOT INTACT: {} finding(s) over {} record(s) and {} bad line(s) in {} file(s); last linked record {head}",
                report.findings_total,
                report.records,
                report.bad_lines,
                report.files
            );
        }
    }
    if report.is_intact() {
        Ok(())
    } else {
        Err(CliError::integrity(format!(
            "audit log has {} finding(s)",
            report.findings_total
        )))
    }
}
