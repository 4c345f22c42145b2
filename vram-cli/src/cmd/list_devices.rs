//! `vram devices`: what this machine offers.

use crate::cli::DevicesArgs;
use crate::exit::CliError;
use vram_validation::format_bytes;
use vram_worker::{DeviceSelection, DeviceSpec};

pub(crate) fn run(args: &DevicesArgs, quiet: bool) -> Result<(), CliError> {
    let sel = DeviceSelection::select(DeviceSpec::Auto)?;
    sel.announce(quiet);
    let mut rows = Vec::new();
    for (i, d) in sel.devices().iter().enumerate() {
        let info = d.info();
        let mem = d
            .memory_info()
            .map_err(|e| CliError::env(format!("device {i}: {e}")))?;
        let attrs = d
            .attributes()
            .map_err(|e| CliError::env(format!("device {i}: {e}")))?;
        let policy = vram_core::check_vram_only(info, &attrs)
            .err()
            .map(|v| v.to_string());
        rows.push(serde_json::json!({
            "index": i,
            "kind": info.kind.as_str(),
            "name": info.name,
            "total_bytes": mem.total,
            "free_bytes": mem.free,
            "integrated": attrs.integrated,
            "vram_only_policy": policy.clone().unwrap_or_else(|| "ok".into()),
        }));
        if !args.json {
            println!(
                "{}:{i}  {}  total {}  free {}{}",
                info.kind.as_str(),
                info.name,
                format_bytes(mem.total),
                format_bytes(mem.free),
                policy.map(|p| format!("  POLICY: {p}")).unwrap_or_default()
            );
        }
    }
    if args.json {
        let out = serde_json::json!({
            "devices": rows,
            "mock": sel.is_mock(),
            "note": sel.mock_reason().map(|r| format!("no CUDA device found ({r}); only the mock device is available")),
        });
        println!("{out:#}");
    }
    // Without --json, the mock is said once, by `announce` on stderr.
    Ok(())
}
