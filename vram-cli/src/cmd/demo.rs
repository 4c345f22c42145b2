//! `vram demo`: the whole story on one synthetic model. Exit 0 only when every
//! step behaved as expected (including the corruption being caught).

use crate::cli::DemoArgs;
use crate::exit::CliError;
use crate::figures::gbps;
use crate::synthetic::SyntheticModel;
use std::time::Instant;
use vram_audit::verify_chain;
use vram_residency::SealHashing;
use vram_residency::SealSource;
use vram_residency::{LeasePolicy, SealRequest, SealedShard, VerifyPolicy, VramError, VramManager};
use vram_validation::{format_bytes, ModelRef};
use vram_worker::{
    audit_key, build_manager, open_audit_log, DeviceSelection, ManagerOptions, SecretChoice,
};

struct Steps {
    json: bool,
    rows: Vec<serde_json::Value>,
    all_ok: bool,
}

impl Steps {
    fn record(&mut self, step: &str, ok: bool, detail: String) {
        if !self.json {
            println!("[{}] {step:<22} {detail}", if ok { " ok " } else { "FAIL" });
        }
        self.all_ok &= ok;
        self.rows
            .push(serde_json::json!({ "step": step, "ok": ok, "detail": detail }));
    }
}

pub(crate) fn run(args: &DemoArgs, quiet: bool) -> Result<(), CliError> {
    let size = args.size;
    if size == 0 {
        return Err(CliError::usage("--size must be at least 1 byte"));
    }
    let selection = DeviceSelection::select(args.device.device)?;
    selection.announce(quiet);
    // What the demo seals dies with it: an ephemeral secret, by choice.
    let secret = SecretChoice::Ephemeral.load()?;
    // A fresh owner-only directory, removed when the demo ends (`dir` is
    // dropped last, after the manager and the audit log that write into it).
    let dir = crate::scratch::ScratchDir::new("vram-demo")?;
    let log_path = dir.path().join("audit.jsonl");
    let key = audit_key(&secret)?;
    let audit = open_audit_log(&log_path, &secret)?;
    let mgr = build_manager(
        secret,
        &selection,
        ManagerOptions {
            audit: Some(audit.clone()),
            leaf: None,
            hashing: SealHashing::Host,
        },
    )?;
    let leaf = mgr.leaf_size();
    let mut steps = Steps {
        json: args.json,
        rows: Vec::new(),
        all_ok: true,
    };
    if !args.json {
        println!(
            "vram demo: {} synthetic model on {}:{} ({}), ephemeral worker secret (key id {}), audit log {} (removed at exit)",
            format_bytes(size),
            selection.kind(),
            selection.target(),
            mgr.device(selection.target())?.info().name,
            mgr.seal_key_id(),
            log_path.display()
        );
    }

    // 1. Seal, streamed from a generator (the model never exists whole on
    // the host): a safetensors file of synthetic tensors.
    let model = DemoModel::new(size);
    let total = model.len();
    let model_ref = ModelRef::new("demo:synthetic-model.safetensors")?;
    let mut req = SealRequest::new(model_ref, selection.target());
    req.compute_sha256 = true;
    let t0 = Instant::now();
    let shard = mgr.seal(
        &req,
        SealSource::Reader {
            reader: &mut model.reader(),
            len: total,
        },
    )?;
    let seal_s = t0.elapsed().as_secs_f64();
    steps.record(
        "seal",
        true,
        format!(
            "shard {} tree {} ({} leaves of {}, {} tensors), {:.2} GB/s",
            shard.shard_id(),
            shard.tree_digest().root,
            shard.leaf_hashes().len(),
            leaf,
            model.tensors,
            gbps(total, seal_s)
        ),
    );

    // 2. Full and sampled verification of the intact shard.
    let full = mgr.verify_with(&shard, VerifyPolicy::Full)?;
    let full_s = full.elapsed.as_secs_f64();
    steps.record(
        "verify full",
        true,
        format!(
            "{} leaves re-read from the device, {:.2} GB/s",
            full.leaves_checked,
            gbps(total, full_s)
        ),
    );
    let sampled = mgr.verify_with(&shard, VerifyPolicy::Sampled { leaves: 16 })?;
    steps.record(
        "verify sampled:16",
        true,
        format!(
            "{} leaves, {:.1} ms",
            sampled.leaves_checked,
            sampled.elapsed.as_secs_f64() * 1e3
        ),
    );

    // 3. An altered handle (as a hostile API client might send back) is refused.
    let mut forged = shard.handle();
    forged.vram_bytes = forged.vram_bytes.saturating_add(1);
    let refused = matches!(
        mgr.check_handle(&forged),
        Err(VramError::SealInvalid { .. })
    );
    let genuine = mgr.check_handle(&shard.handle()).is_ok();
    steps.record(
        "altered handle refused",
        refused && genuine,
        "vram_bytes+1 in a returned handle fails the seal; the genuine handle passes".into(),
    );

    // 4. A verified lease, and a request served from the leased memory.
    let target = model.middle_tensor();
    let served = serve_request(&mgr, &shard, &target);
    steps.record(
        "lease and serve",
        served.is_ok(),
        served.unwrap_or_else(|e| format!("unexpected error: {e}")),
    );

    // 5. Corrupt one byte of that tensor in device memory behind the seal's back.
    let offset = model.offset_in(&target);
    selection.corrupt_latest(offset, 0x01)?;
    steps.record(
        "corrupt device byte",
        true,
        format!("flipped a bit of byte {offset} in device memory (inside tensor {target})"),
    );

    // 6. The next request's lease (full policy) catches it, names the
    // tensor, and is refused.
    match mgr.lease(&shard, LeasePolicy::Full) {
        Err(e @ VramError::IntegrityViolation { .. }) => {
            let ranges = e.corrupt_ranges();
            let in_range = ranges.iter().any(|r| r.start <= offset && offset < r.end);
            let named = match &e {
                VramError::IntegrityViolation { tensors, .. } => tensors.clone(),
                _ => Vec::new(),
            };
            steps.record(
                "corruption detected",
                in_range
                    && named
                        .iter()
                        .any(|t| t.starts_with(&format!("{target}, bytes "))),
                format!(
                    "lease refused: corrupt bytes {} (leaf {}), in {}",
                    ranges
                        .iter()
                        .map(|r| format!("{}..{}", r.start, r.end))
                        .collect::<Vec<_>>()
                        .join(", "),
                    ranges.first().map_or(0, |r| r.leaf_index),
                    named.join("; ")
                ),
            );
        }
        Err(e) => steps.record(
            "corruption detected",
            false,
            format!("unexpected error: {e}"),
        ),
        Ok(_) => steps.record(
            "corruption detected",
            false,
            "a lease was granted on corrupt memory".into(),
        ),
    }

    // 7. Putting the byte back (as a tamperer covering their tracks would) does
    // not make the shard trusted again: no lease, no verification.
    selection.corrupt_latest(offset, 0x01)?;
    let still_refused = matches!(
        mgr.lease(&shard, LeasePolicy::Full),
        Err(VramError::Compromised { .. })
    ) && matches!(
        mgr.verify_with(&shard, VerifyPolicy::Full),
        Err(VramError::Compromised { .. })
    );
    steps.record(
        "restored byte refused",
        still_refused && shard.is_compromised(),
        "the bit was flipped back; no lease is granted until the model is released and sealed again"
            .into(),
    );

    // 8. Release: device memory and capacity come back.
    drop(shard);
    let used = mgr.used_vram(selection.target());
    let live = selection.mock_device().map_or(0, |m| m.live_allocations());
    steps.record(
        "release",
        used == 0 && live == 0,
        format!("{used} bytes reserved, {live} live allocations after drop"),
    );

    // 9. The audit log verifies and holds the failure and the refusals.
    let report = verify_chain(std::slice::from_ref(&log_path), &key, None)
        .map_err(|e| CliError::env(format!("audit verify: {e}")))?;
    let text =
        std::fs::read_to_string(&log_path).map_err(|e| crate::exit::io_error(&log_path, &e))?;
    let failure_logged = text.contains("\"seal_verification_failed\"")
        && text.contains("\"lease_refused\"")
        && text.contains(&target);
    steps.record(
        "audit log verified",
        report.is_intact() && failure_logged,
        format!(
            "{} records, chain intact: {}, verification failure recorded: {failure_logged}",
            report.records,
            report.is_intact()
        ),
    );

    let verdict = if steps.all_ok {
        Ok(())
    } else {
        Err(CliError::integrity("the demo did not behave as expected"))
    };
    let mut summary = serde_json::json!({
        "ok": steps.all_ok,
        "device_kind": selection.kind(),
        "bytes": total,
        "seal_gb_per_s": gbps(total, seal_s),
        "verify_full_gb_per_s": gbps(total, full_s),
        "sampled_verify_ms": sampled.elapsed.as_secs_f64() * 1e3,
        "audit_log": log_path.display().to_string(),
        "steps": steps.rows,
    });
    if args.json {
        if let (Err(e), Some(obj)) = (&verdict, summary.as_object_mut()) {
            obj.insert("error".into(), e.to_json());
        }
        println!("{summary:#}");
        return verdict.map_err(CliError::reported_in_json);
    } else {
        println!(
            "summary: {} on {}; seal {:.2} GB/s, full verify {:.2} GB/s, sampled verify {:.1} ms; {}",
            format_bytes(total),
            selection.kind(),
            gbps(total, seal_s),
            gbps(total, full_s),
            sampled.elapsed.as_secs_f64() * 1e3,
            if steps.all_ok { "every step behaved as expected" } else { "SOME STEPS FAILED" }
        );
    }
    verdict
}

/// The demo's model: a safetensors file of `tensors` synthetic U8 tensors
/// (`encoder.layer.N.weight`), their bytes from [`SyntheticModel`].
struct DemoModel {
    header: Vec<u8>,
    data: u64,
    tensors: u64,
    per_tensor: u64,
}

impl DemoModel {
    fn new(data: u64) -> Self {
        let tensors = data.clamp(1, 8);
        let per_tensor = data.checked_div(tensors).unwrap_or(data);
        let mut entries = Vec::new();
        for i in 0..tensors {
            let start = per_tensor.saturating_mul(i);
            let end = if i.saturating_add(1) == tensors {
                data
            } else {
                start.saturating_add(per_tensor)
            };
            entries.push(format!(
                "\"encoder.layer.{i}.weight\":{{\"dtype\":\"U8\",\"shape\":[{}],\"data_offsets\":[{start},{end}]}}",
                end.saturating_sub(start)
            ));
        }
        let json = format!("{{{}}}", entries.join(","));
        let mut header = u64::try_from(json.len())
            .unwrap_or(0)
            .to_le_bytes()
            .to_vec();
        header.extend_from_slice(json.as_bytes());
        Self {
            header,
            data,
            tensors,
            per_tensor,
        }
    }

    fn len(&self) -> u64 {
        u64::try_from(self.header.len())
            .unwrap_or(0)
            .saturating_add(self.data)
    }

    fn reader(&self) -> impl std::io::Read + Send + '_ {
        std::io::Read::chain(&self.header[..], SyntheticModel::new(0x5EED, self.data))
    }

    fn middle_tensor(&self) -> String {
        format!("encoder.layer.{}.weight", self.tensors / 2)
    }

    /// A byte in the middle of the middle tensor, as a file offset.
    fn offset_in(&self, _tensor: &str) -> u64 {
        let start = self.per_tensor.saturating_mul(self.tensors / 2);
        u64::try_from(self.header.len())
            .unwrap_or(0)
            .saturating_add(start)
            .saturating_add(self.per_tensor / 2)
    }
}

/// One "request": a lease under the default policy, then a checksum of a
/// tensor computed from the leased memory (on CUDA: the tensor's device
/// range, which a kernel would take).
fn serve_request(mgr: &VramManager, shard: &SealedShard, name: &str) -> Result<String, VramError> {
    let lease = mgr.lease(shard, LeasePolicy::default())?;
    let tensors = lease.tensors()?;
    let t = tensors.get(name)?;
    let v = lease.verification();
    let what = match t.host_bytes() {
        Some(bytes) => {
            let sum = bytes
                .iter()
                .fold(0u64, |acc, b| acc.wrapping_add(u64::from(*b)));
            format!("served: byte sum of {name} ({} bytes) = {sum}", bytes.len())
        }
        None => {
            format!("served: {name} handed to the engine as a device range (address not shown)")
        }
    };
    Ok(format!(
        "{} lease ({} leaves in {:.2} ms); {what}",
        LeasePolicy::default(),
        v.leaves_checked,
        v.elapsed.as_secs_f64() * 1e3
    ))
}
