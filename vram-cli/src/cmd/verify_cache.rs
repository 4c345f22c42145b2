//! `vram verify-cache hf://ORG/NAME[@REV]`: every file of a cached model
//! checked against its blob name. Offline, always.

use crate::cli::VerifyCacheArgs;
use crate::exit::CliError;
use vram_hub::FileCheck;
use vram_validation::OutputLine;
use vram_worker::{hub, WorkerError};

/// `vram verify-cache hf://ORG/NAME[@REV]`: checks every file of a cached
/// model against its blob name, seals nothing. Exit 1 when one is corrupt.
pub(crate) fn run(args: &VerifyCacheArgs, quiet: bool) -> Result<(), CliError> {
    let snapshot = hub::resolve(&args.model, args.cache_without_links)?;
    let mut rows = Vec::new();
    let mut bad = 0usize;
    let mut unchecked = 0usize;
    for f in &snapshot.files {
        let bar = crate::progress::bar(f.len, "check", quiet || args.json);
        let outcome = f.check().map_err(WorkerError::from)?;
        bar.finish_and_clear();
        let (status, actual) = match &outcome {
            Some(FileCheck::Intact) => ("ok", None),
            Some(FileCheck::Corrupt { actual }) => ("corrupt", Some(actual.clone())),
            None => ("unchecked", None),
        };
        if status == "corrupt" {
            bad = bad.saturating_add(1);
        }
        if status == "unchecked" {
            unchecked = unchecked.saturating_add(1);
        }
        if args.json {
            rows.push(serde_json::json!({
                "file": f.name,
                "status": status,
                "bytes": f.len,
                "algorithm": f.expected.map(|e| e.algorithm()),
                "expected": f.expected.map(|e| e.to_hex()),
                "actual": actual,
                "blob": f.path.to_string_lossy(),
            }));
            continue;
        }
        let mut line = OutputLine::new();
        match (&outcome, f.expected) {
            (Some(FileCheck::Corrupt { actual }), Some(expected)) => {
                line.push("CORRUPT  ")
                    .field(&hub::corrupt_message(&snapshot, f, expected, actual));
                println!("{line}");
                let mut fix = OutputLine::new();
                fix.push("         to fetch it again: ")
                    .field(&hub::repair_command(&snapshot, f));
                println!("{fix}");
            }
            (None, _) => {
                line.push("unchecked ")
                    .field(&f.name)
                    .push(" (stored without a blob link: no expected digest)");
                println!("{line}");
            }
            _ => {
                line.push("ok       ").field(&f.name);
                println!("{line}");
            }
        }
    }
    let verdict = if bad > 0 {
        Err(CliError::integrity(format!(
            "{}: {bad} corrupt file(s) in the cache",
            snapshot.reference()
        )))
    } else {
        Ok(())
    };
    if args.json {
        let mut v = serde_json::json!({
            "model": snapshot.reference(),
            "intact": bad == 0,
            "unchecked": unchecked,
            "files": rows,
        });
        if let (Err(e), Some(obj)) = (&verdict, v.as_object_mut()) {
            obj.insert("error".into(), e.to_json());
        }
        println!("{v:#}");
        return verdict.map_err(CliError::reported_in_json);
    } else {
        println!(
            "{}: {} file(s), {}",
            snapshot.reference(),
            snapshot.files.len(),
            if bad == 0 && unchecked == 0 {
                "all intact".to_owned()
            } else if bad == 0 {
                format!("{unchecked} unchecked (stored without blob links), the rest intact")
            } else {
                format!("{bad} CORRUPT")
            }
        );
    }
    verdict
}
