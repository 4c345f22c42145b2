//! `vram audit verify|show|head LOG...`: check a chain (exit 0 only when
//! intact), show its records, print its verified head.

use super::audit_key;
use crate::cli::{AuditHeadArgs, AuditShowArgs, AuditVerifyArgs};
use crate::exit::{shown_path, CliError};
use std::path::PathBuf;
use vram_audit::{
    read_records, segment_files, verify_chain_with, Checkpoint, ShownLine, ShownRecord,
    VerifyOptions, VerifyReport,
};
use vram_validation::{escape_for_log, OutputLine};

/// The files of the log: one path names a rotated log by its base (every
/// segment, in order); several are taken as given, oldest first.
fn log_files(logs: &[PathBuf], what: &str) -> Result<Vec<PathBuf>, CliError> {
    for p in logs {
        let meta = std::fs::metadata(p).map_err(|e| crate::exit::io_error(p, &e))?;
        if meta.is_dir() {
            return Err(CliError::usage(format!(
                "{}: is a directory",
                shown_path(p)
            )));
        }
    }
    match logs {
        [base] => segment_files(base).map_err(|e| CliError::env(format!("{what}: {e}"))),
        many => Ok(many.to_vec()),
    }
}

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
    let files = log_files(&args.logs, "audit verify")?;
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
    let verdict = if report.is_intact() {
        Ok(())
    } else {
        Err(CliError::integrity(format!(
            "audit log has {} finding(s)",
            report.findings_total
        )))
    };
    if args.json {
        let mut v = serde_json::json!({
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
            "unknown_event_types": report.unknown_event_types,
        });
        if let (Err(e), Some(obj)) = (&verdict, v.as_object_mut()) {
            obj.insert("error".into(), e.to_json());
        }
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
        if report.unknown_event_types.records > 0 {
            // Not a finding: authentic, linked records a newer writer wrote.
            // The type names in it are escaped and bounded by vram-audit.
            println!("note: {}", report.unknown_event_types);
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
    if args.json {
        verdict.map_err(CliError::reported_in_json)
    } else {
        verdict
    }
}

/// `vram audit head LOG...`: the verified head as `SEQ:HASH[:LOG_ID]`, the
/// form `vram audit verify --checkpoint` takes; nothing on stdout unless the
/// chain is intact (exit 1 with the findings on stderr otherwise).
pub(crate) fn head(args: &AuditHeadArgs) -> Result<(), CliError> {
    let files = log_files(&args.logs, "audit head")?;
    let secret = crate::secret::load(args.secret_file.as_deref())?;
    let report = verify_chain_with(&files, &audit_key(&secret), &VerifyOptions::default())
        .map_err(|e| CliError::env(format!("audit head: {e}")))?;
    let head = report.head.as_ref().filter(|_| report.is_intact());
    let Some(head) = head else {
        let err = CliError::integrity(format!(
            "audit log has {} finding(s); no head is printed for a chain that does not verify",
            report.findings_total
        ));
        print_findings_to_stderr(&report);
        if args.json {
            let v = serde_json::json!({
                "intact": false,
                "findings_total": report.findings_total,
                "findings": report.findings,
                "error": err.to_json(),
            });
            println!("{v:#}");
            return Err(err.reported_in_json());
        }
        return Err(err);
    };
    if args.json {
        let v = serde_json::json!({
            "head": head.to_string(),
            "seq": head.seq,
            "hash": head.hash,
            "log_id": head.log_id,
            "records": report.records,
            "files": report.files,
        });
        println!("{v:#}");
    } else {
        println!("{head}");
    }
    Ok(())
}

fn print_findings_to_stderr(report: &VerifyReport) {
    for f in &report.findings {
        let mut line = OutputLine::new();
        line.push("vram: ").field(&f.to_string());
        eprintln!("{line}");
    }
    if report.findings_omitted > 0 {
        eprintln!("vram: ... and {} more finding(s)", report.findings_omitted);
    }
}

/// `vram audit show LOG...`: records as a table or JSON lines, filtered; the
/// chain verified on the way when a secret is given.
pub(crate) fn show(args: &AuditShowArgs, quiet: bool) -> Result<(), CliError> {
    let since = args
        .since
        .as_deref()
        .map(|t| time_arg("--since", t))
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|t| time_arg("--until", t))
        .transpose()?;
    let files = log_files(&args.logs, "audit show")?;
    let secret = crate::secret::load_if_given(args.secret_file.as_deref())?;
    let key = secret.as_ref().map(audit_key);
    if key.is_none() {
        eprintln!(
            "vram: note: no secret given (--secret-file): records are shown UNVERIFIED; anyone who can write the log could have written them"
        );
    }
    let wanted = |r: &ShownRecord| {
        (args.events.is_empty() || args.events.iter().any(|e| e == r.event.kind()))
            && args
                .shard
                .as_ref()
                .is_none_or(|s| r.event.shard_id() == Some(s.as_str()))
            && since.as_ref().is_none_or(|t| r.ts.as_str() >= t.as_str())
            && until.as_ref().is_none_or(|t| r.ts.as_str() < t.as_str())
    };
    let verified = key.is_some();
    if !args.json {
        println!(
            "{:>8}  {:<30}  {:<16}  {:<24}  {:<40}  {}SUMMARY",
            "SEQ",
            "TIME",
            "WORKER",
            "EVENT",
            "SHARD",
            if verified { "MAC  " } else { "" },
        );
    }
    let mut shown = 0u64;
    let mut unreadable = 0u64;
    let mut print_err = None;
    let report = read_records(
        &files,
        key.as_ref(),
        &VerifyOptions::default(),
        |item| match item {
            ShownLine::Record(r) => {
                if !wanted(&r) {
                    return;
                }
                shown = shown.saturating_add(1);
                if args.json {
                    match serde_json::to_string(&r) {
                        Ok(line) => println!("{line}"),
                        Err(e) => {
                            print_err.get_or_insert(e.to_string());
                        }
                    }
                } else {
                    println!("{}", table_row(&r));
                }
            }
            ShownLine::Unreadable { file, line, reason } => {
                unreadable = unreadable.saturating_add(1);
                eprintln!("vram: {}:{line}: {reason}", shown_path(&file));
            }
            _ => {}
        },
    )
    .map_err(|e| CliError::env(format!("audit show: {e}")))?;
    if let Some(e) = print_err {
        return Err(CliError::env(format!(
            "audit show: could not serialize a record: {e}"
        )));
    }
    if !quiet {
        eprintln!(
            "vram: {shown} record(s) shown{}",
            if unreadable > 0 {
                format!(", {unreadable} unreadable line(s)")
            } else {
                String::new()
            }
        );
    }
    match report {
        Some(r) if !r.is_intact() => {
            print_findings_to_stderr(&r);
            Err(CliError::integrity(format!(
                "audit log has {} finding(s): the records shown are not all authentic and linked",
                r.findings_total
            )))
        }
        Some(r) => {
            if !quiet {
                eprintln!("vram: chain intact: {} record(s) verified", r.records);
                if r.unknown_event_types.records > 0 {
                    eprintln!("vram: note: {}", r.unknown_event_types);
                }
            }
            Ok(())
        }
        None => Ok(()),
    }
}

/// One table row; every field from the log is escaped (and shortened).
fn table_row(r: &ShownRecord) -> String {
    let mac = match r.authentic {
        Some(true) => "ok   ",
        Some(false) => "BAD  ",
        None => "",
    };
    format!(
        "{:>8}  {:<30}  {:<16}  {:<24}  {:<40}  {mac}{}",
        r.seq,
        escape_for_log(&r.ts, 30),
        escape_for_log(&r.worker, 16),
        // The writer's text when this build does not know the type.
        escape_for_log(r.event.kind(), 24),
        escape_for_log(r.event.shard_id().unwrap_or("-"), 64),
        escape_for_log(&summary(r), 160),
    )
}

/// The event's other fields, `key=value` (strings unquoted, the rest as JSON);
/// for an event of a type this build does not know, all of them as written
/// (`--json` prints its object verbatim), after a note saying so.
fn summary(r: &ShownRecord) -> String {
    let unknown = r.event.known().is_none();
    let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(&r.event) else {
        return String::new();
    };
    let fields = fields
        .iter()
        .filter(|(k, _)| k.as_str() != "type" && (unknown || k.as_str() != "shard_id"))
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(" ");
    if unknown {
        format!("(event type unknown to this build) {fields}")
    } else {
        fields
    }
}

/// A `--since`/`--until` time, in the form records store theirs
/// (`YYYY-MM-DDTHH:MM:SS.NNNNNNNNNZ`, UTC), so that comparing the text
/// compares the times. Takes RFC 3339 in UTC (`Z`, any fraction up to
/// nanoseconds) or a date alone (midnight UTC).
fn time_arg(flag: &str, value: &str) -> Result<String, CliError> {
    let err = || {
        CliError::usage(format!(
            "{flag}: expected an RFC 3339 time in UTC such as 2026-01-31T12:00:00Z (or a date, 2026-01-31), got `{}`",
            escape_for_log(value, 40)
        ))
    };
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let (date, time) = match value.split_once(['T', 't']) {
        Some((d, t)) => (d, Some(t)),
        None => (value, None),
    };
    let mut d = date.split('-');
    let (Some(y), Some(m), Some(day), None) = (d.next(), d.next(), d.next(), d.next()) else {
        return Err(err());
    };
    if !(digits(y, 4) && digits(m, 2) && digits(day, 2)) {
        return Err(err());
    }
    let Some(time) = time else {
        return Ok(format!("{date}T00:00:00.000000000Z"));
    };
    let time = time
        .strip_suffix(['Z', 'z'])
        .ok_or_else(|| CliError::usage(format!("{flag}: give the time in UTC, ending in Z")))?;
    let (hms, frac) = match time.split_once('.') {
        Some((h, f)) => (h, f),
        None => (time, ""),
    };
    let mut t = hms.split(':');
    let (Some(h), Some(min), Some(sec), None) = (t.next(), t.next(), t.next(), t.next()) else {
        return Err(err());
    };
    if !(digits(h, 2) && digits(min, 2) && digits(sec, 2))
        || frac.len() > 9
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || (time.contains('.') && frac.is_empty())
    {
        return Err(err());
    }
    Ok(format!("{date}T{hms}.{frac:0<9}Z"))
}

#[cfg(test)]
mod tests {
    use super::time_arg;

    #[test]
    fn times_take_the_form_records_store() {
        let ok = [
            ("2026-01-31", "2026-01-31T00:00:00.000000000Z"),
            ("2026-01-31T12:00:00Z", "2026-01-31T12:00:00.000000000Z"),
            ("2026-01-31t12:00:00.5z", "2026-01-31T12:00:00.500000000Z"),
            (
                "2026-01-31T12:00:00.123456789Z",
                "2026-01-31T12:00:00.123456789Z",
            ),
        ];
        for (input, want) in ok {
            assert_eq!(
                time_arg("--since", input).ok().as_deref(),
                Some(want),
                "{input}"
            );
        }
        for bad in [
            "yesterday",
            "2026-1-31",
            "2026-01-31T12:00:00",
            "2026-01-31T12:00:00+01:00",
            "2026-01-31T12:00Z",
            "2026-01-31T12:00:00.Z",
            "2026-01-31T12:00:00.1234567890Z",
        ] {
            assert!(time_arg("--since", bad).is_err(), "{bad}");
        }
    }
}
