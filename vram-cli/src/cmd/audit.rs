//! `vram audit verify LOG...`: check a chain; exit 0 only when intact.

use super::audit_key;
use crate::cli::AuditVerifyArgs;
use crate::exit::CliError;
use vram_residency::vram_audit::{segment_files, verify_chain, Checkpoint, FindingKind};
use vram_residency::vram_validation::OutputLine;

pub(crate) fn verify(args: &AuditVerifyArgs) -> Result<(), CliError> {
    let checkpoint: Option<Checkpoint> = args
        .checkpoint
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|_| {
            CliError::usage("--checkpoint: expected SEQ:HASH (decimal sequence, 64 hex)")
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
    let mut report = verify_chain(&files, &key, checkpoint.as_ref())
        .map_err(|e| CliError::env(format!("audit verify: {e}")))?;
    if args.allow_empty {
        report.findings.retain(|f| f.kind != FindingKind::Empty);
    }
    if args.json {
        let v = serde_json::json!({
            "intact": report.is_intact(),
            "records": report.records,
            "files": report.files,
            "head": report.head.as_ref().map(ToString::to_string),
            "genesis": report.genesis,
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
        let head = report
            .head
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_else(|| "-".into());
        match &report.genesis {
            Some(g) => println!(
                "log id {} (format {}, audit key id {})",
                g.log_id, g.format, g.key_id
            ),
            None if report.records > 0 => println!(
                "note: no genesis record: the log was written before genesis records existed (or begins with a record that is not one)"
            ),
            None => {}
        }
        if report.is_intact() {
            println!(
                "intact: {} record(s) in {} file(s); head {head}",
                report.records, report.files
            );
        } else {
            println!(
                "NOT INTACT: {} finding(s) over {} record(s) in {} file(s)",
                report.findings.len(),
                report.records,
                report.files
            );
        }
    }
    if report.is_intact() {
        Ok(())
    } else {
        Err(CliError::integrity(format!(
            "audit log has {} finding(s)",
            report.findings.len()
        )))
    }
}
