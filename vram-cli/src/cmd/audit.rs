//! `vram audit verify|show|head LOG...`: check a chain (exit 0 only when
//! intact), show its records, print its verified head.

use crate::cli::{AuditHeadArgs, AuditPublicKeyArgs, AuditShowArgs, AuditVerifyArgs};
use crate::exit::{shown_path, CliError};
use std::path::{Path, PathBuf};
use vram_audit::{
    is_log_file, read_records, segment_files, verify_chain_public, verify_chain_with, AuditEvent,
    AuditPublicKey, Checkpoint, FindingKind, ShownLine, ShownRecord, SignedCheckpoint,
    VerifyOptions, VerifyReport,
};
use vram_validation::{escape_for_log, OutputLine};
use vram_worker::{audit_key, audit_signer, SecretSource};

/// The files of the log: one path names a rotated log by its base (every
/// segment, in order; the base itself may be gone when its oldest segments
/// were archived, or renamed away: stderr says so); several are taken as
/// given, oldest first.
fn log_files(logs: &[PathBuf], what: &str) -> Result<Vec<PathBuf>, CliError> {
    if let [base] = logs {
        if std::fs::symlink_metadata(base).is_err() {
            let files = segment_files(base).map_err(|e| CliError::env(format!("{what}: {e}")))?;
            let Some(first) = files.first() else {
                return Err(CliError::usage(format!(
                    "{}: no such file",
                    shown_path(base)
                )));
            };
            eprintln!(
                "vram: note: {} is absent: reading its segments from {} on (older segments archived and removed, or the log was renamed by another program; see docs/audit-log.md, Rotation and retention)",
                shown_path(base),
                shown_path(first)
            );
            return Ok(files);
        }
    }
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

/// When the first file given for a single base path is not the base but
/// holds the log's genesis record, the log was renamed (by logrotate, say):
/// say so plainly.
fn warn_if_renamed(logs: &[PathBuf], files: &[PathBuf], report: &VerifyReport) {
    if let ([base], Some(first)) = (logs, files.first()) {
        if first != base && report.genesis.is_some() {
            eprintln!(
                "vram: warning: {} begins the log (its genesis record) but is not named {}: another program (logrotate?) renamed the log; vram refuses to continue it (see docs/audit-log.md, Rotation and retention)",
                shown_path(first),
                shown_path(base)
            );
        }
    }
}

/// Reads a public key file (PEM), at most 64 KiB, opened as a file someone
/// else may write to ([`vram_hub::read_regular_file`]: no symbolic link,
/// nothing but a regular file, a FIFO refused without waiting on it).
fn read_public_key(path: &Path) -> Result<AuditPublicKey, CliError> {
    let bytes = vram_hub::read_regular_file(path, 64 * 1024).map_err(|e| match e {
        vram_hub::HubError::Io { kind, .. } => crate::exit::io_error(path, &kind.into()),
        e => CliError::usage(format!("--public-key: {e}")),
    })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        CliError::usage(format!(
            "--public-key {}: not a PEM text file",
            shown_path(path)
        ))
    })?;
    AuditPublicKey::from_pem(&text)
        .map_err(|e| CliError::usage(format!("--public-key {}: {e}", shown_path(path))))
}

/// A `--checkpoint` value: a signed checkpoint line, or a plain position.
fn checkpoint_arg(
    value: Option<&str>,
) -> Result<(Option<Checkpoint>, Option<SignedCheckpoint>), CliError> {
    let Some(value) = value else {
        return Ok((None, None));
    };
    if let Ok(signed) = value.parse::<SignedCheckpoint>() {
        return Ok((None, Some(signed)));
    }
    value.parse::<Checkpoint>().map(|c| (Some(c), None)).map_err(|_| {
        CliError::usage(
            "--checkpoint: expected SEQ:HASH, SEQ:HASH:LOG_ID (decimal sequence, 64 hex, 32 hex) or a signed checkpoint line SEQ:HASH:LOG_ID:KEY:SIGNATURE from `vram audit head --signed`",
        )
    })
}

/// `vram audit public-key`: the PEM of the checkpoint signing key's public
/// key and its fingerprint (stderr; both on stdout under `--json`).
pub(crate) fn public_key(args: &AuditPublicKeyArgs) -> Result<(), CliError> {
    let secret = SecretSource::new(args.secret_file.clone()).load()?;
    let signer = audit_signer(&secret)?;
    let public = signer.public_key();
    if args.json {
        let v = serde_json::json!({
            "public_key_pem": public.to_pem(),
            "fingerprint": public.fingerprint(),
            "algorithm": "ed25519",
        });
        println!("{v:#}");
    } else {
        print!("{}", public.to_pem());
        eprintln!(
            "vram: fingerprint {} (ed25519; named in the genesis record of every log this worker signs)",
            public.fingerprint()
        );
    }
    Ok(())
}

/// The report of `files` with the keys the flags give: the public key, the
/// secret, or both. With `--public-key` alone no secret is loaded.
fn verify_with_flags(
    files: &[PathBuf],
    secret_file: Option<&Path>,
    public_key: Option<&Path>,
    options: &VerifyOptions,
    what: &str,
) -> Result<(VerifyReport, Option<AuditPublicKey>), CliError> {
    let public = public_key.map(read_public_key).transpose()?;
    let secret = match (&public, secret_file) {
        (Some(_), None) => None,
        _ => Some(SecretSource::new(secret_file.map(Path::to_path_buf)).load()?),
    };
    let key = secret.as_ref().map(audit_key).transpose()?;
    let report = match (&public, &key) {
        (Some(p), k) => verify_chain_public(files, p, k.as_ref(), options),
        (None, Some(k)) => verify_chain_with(files, k, options),
        (None, None) => {
            return Err(CliError::usage(format!(
                "{what}: give --secret-file or --public-key"
            )))
        }
    }
    .map_err(|e| CliError::env(format!("{what}: {e}")))?;
    Ok((report, public))
}

pub(crate) fn verify(args: &AuditVerifyArgs) -> Result<(), CliError> {
    let (checkpoint, signed_checkpoint) = checkpoint_arg(args.checkpoint.as_deref())?;
    let after: Option<Checkpoint> = args
        .after
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|_| {
            CliError::usage(
                "--after: expected SEQ:HASH or SEQ:HASH:LOG_ID (the head of the removed segments, as `vram audit head` printed it)",
            )
        })?;
    let files = log_files(&args.logs, "audit verify")?;
    let mut options = VerifyOptions::default();
    options.checkpoint = checkpoint;
    options.signed_checkpoint = signed_checkpoint;
    options.after = after;
    options.max_findings = args.max_findings;
    options.allow_empty = args.allow_empty;
    // Memory is bounded by `max_findings`, not by the log: findings past it are
    // only counted, and a run of bad lines is one finding.
    let (report, public) = verify_with_flags(
        &files,
        args.secret_file.as_deref(),
        args.public_key.as_deref(),
        &options,
        "audit verify",
    )?;
    warn_if_renamed(&args.logs, &files, &report);
    if let (Some(signed), Some(p)) = (&options.signed_checkpoint, &public) {
        if !signed.verifies_with(p) {
            return Err(CliError::integrity(
                "--checkpoint: the signed checkpoint does not verify under the public key given (altered, or signed by another key)",
            ));
        }
    }
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
            "macs_checked": report.macs_checked,
            "signing_key": report.genesis.as_ref().and_then(|g| g.signing_key.clone()),
            "public_key": public.as_ref().map(AuditPublicKey::fingerprint),
            "signed_checkpoints": report.signed_checkpoints,
            "proven_seq": report.proven_seq,
            "unproven_records": report.unproven_records,
            "last_signed": report.last_signed.as_ref().map(ToString::to_string),
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
        if let Some(fp) = report.genesis.as_ref().and_then(|g| g.signing_key.as_ref()) {
            println!("signing key {fp} (named in the genesis record): checkpoints verify with its public key");
        }
        if let Some(p) = &public {
            let proven = match report.proven_seq {
                Some(seq) => format!(
                    "proven through seq {seq} by {} signed checkpoint(s) under key {}",
                    report.signed_checkpoints,
                    p.fingerprint()
                ),
                None => format!("no signed checkpoint under key {}", p.fingerprint()),
            };
            println!(
                "public key: {proven}; {} record(s) after it UNPROVEN (linked, not yet covered by a signature){}",
                report.unproven_records,
                if report.macs_checked { "" } else { "; MACs not checked (no secret)" }
            );
        }
        if report.is_intact() && public.is_some() && report.unproven_records > 0 {
            // Linked, but not covered by a signature: not called intact.
            println!(
                "intact through seq {} (signed); {} later record(s) UNPROVEN; {} record(s) in {} file(s); head {head}",
                report.proven_seq.unwrap_or(0),
                report.unproven_records,
                report.records,
                report.files
            );
        } else if report.is_intact() {
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
    let (report, _) = verify_with_flags(
        &files,
        args.secret_file.as_deref(),
        args.public_key.as_deref(),
        &VerifyOptions::default(),
        "audit head",
    )?;
    warn_if_renamed(&args.logs, &files, &report);
    if args.signed && report.is_intact() {
        let Some(signed) = &report.last_signed else {
            return Err(CliError::integrity(
                "audit head --signed: the log holds no signed checkpoint linked to its start (written without a signing key, or before its first checkpoint)",
            ));
        };
        if args.json {
            let v = serde_json::json!({
                "signed_checkpoint": signed.to_string(),
                "seq": signed.checkpoint.seq,
                "hash": signed.checkpoint.hash,
                "log_id": signed.checkpoint.log_id,
                "signing_key": signed.signing_key,
                "signature": signed.signature,
            });
            println!("{v:#}");
        } else {
            println!("{signed}");
        }
        return Ok(());
    }
    // The oldest segments of a longer log (the anchor of a retention, see
    // docs/audit-log.md): their last file ends in a `rotated` record naming a
    // file that exists but was not given. That alone does not hide the head.
    let prefix_only = !report.is_intact()
        && u64::try_from(report.findings.len()).ok() == Some(report.findings_total)
        && report.findings.iter().all(|f| match &f.kind {
            FindingKind::MissingFile { expected } => {
                files.last().map(PathBuf::as_path) == Some(&*f.file)
                    && f.file.with_file_name(expected).exists()
            }
            _ => false,
        });
    if prefix_only {
        eprintln!(
            "vram: note: the chain continues in a file not given: this is the head of the files given (older segments of a longer log)"
        );
    }
    let head = report
        .head
        .as_ref()
        .filter(|_| report.is_intact() || prefix_only);
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
    let (since, until) = (&args.since, &args.until);
    if let (Some(s), Some(u)) = (since, until) {
        if u <= s {
            return Err(CliError::usage(format!(
                "--until ({u}) is not after --since ({s}): no record could match"
            )));
        }
    }
    let known = AuditEvent::known_kinds();
    if let Some(bad) = args.events.iter().find(|e| !known.contains(&e.as_str())) {
        return Err(CliError::usage(format!(
            "--event: unknown event type `{}`; known types: {}",
            escape_for_log(bad, 40),
            known.join(", ")
        )));
    }
    let files = log_files(&args.logs, "audit show")?;
    for f in &files {
        let is_log = is_log_file(f).map_err(|e| CliError::env(format!("audit show: {e}")))?;
        if !is_log {
            return Err(CliError::usage(format!(
                "{}: not an audit log (its first line is not an audit record)",
                shown_path(f)
            )));
        }
    }
    let source = SecretSource::new(args.secret_file.clone());
    let secret = if source.is_configured() {
        Some(source.load()?)
    } else {
        None
    };
    let key = secret.as_ref().map(audit_key).transpose()?;
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
