//! Metrics of `vram seal --hold` in the Prometheus text format (0.0.4), the
//! format both a Prometheus scrape and node_exporter's textfile collector
//! read: served over HTTP (`--metrics-listen`) or written atomically to a file
//! (`--metrics-file`).
//!
//! Every family is rendered from one consistent snapshot taken when asked
//! for, so a scrape never sees half of an update.

use crate::exit::{io_error, shown_path, CliError};
use prometheus::core::Collector;
use prometheus::{Encoder as _, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use vram_audit::SinkStats;
use vram_residency::{MetricsSnapshot, ScrubStats};

/// Content type of the text exposition format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Everything a scrape reports, read at one moment.
#[derive(Debug, Clone)]
pub(crate) struct HoldSnapshot {
    /// Shards held resident.
    pub(crate) shards: u64,
    /// Device bytes they occupy.
    pub(crate) bytes: u64,
    /// Held shards found compromised.
    pub(crate) compromised: u64,
    /// `mock` or `cuda`.
    pub(crate) device_kind: &'static str,
    pub(crate) manager: MetricsSnapshot,
    pub(crate) scrub: ScrubStats,
    pub(crate) audit: SinkStats,
}

fn prom_error(e: prometheus::Error) -> CliError {
    CliError::env(format!("metrics: {e}"))
}

fn counter(registry: &Registry, name: &str, help: &str, value: u64) -> Result<(), CliError> {
    let c = IntCounter::new(name, help).map_err(prom_error)?;
    c.inc_by(value);
    register(registry, c)
}

fn gauge(registry: &Registry, name: &str, help: &str, value: u64) -> Result<(), CliError> {
    let g = IntGauge::new(name, help).map_err(prom_error)?;
    g.set(i64::try_from(value).unwrap_or(i64::MAX));
    register(registry, g)
}

fn register<C: Collector + 'static>(registry: &Registry, c: C) -> Result<(), CliError> {
    registry.register(Box::new(c)).map_err(prom_error)
}

/// The snapshot in the Prometheus text format.
pub(crate) fn render(s: &HoldSnapshot) -> Result<String, CliError> {
    let r = Registry::new();
    let info = IntGaugeVec::new(
        Opts::new("vram_info", "This vram process: version and device kind."),
        &["version", "device_kind"],
    )
    .map_err(prom_error)?;
    info.with_label_values(&[env!("CARGO_PKG_VERSION"), s.device_kind])
        .set(1);
    register(&r, info)?;
    gauge(
        &r,
        "vram_shards_held",
        "Sealed shards held resident.",
        s.shards,
    )?;
    gauge(
        &r,
        "vram_shard_bytes_held",
        "Device bytes of the sealed shards held resident.",
        s.bytes,
    )?;
    gauge(
        &r,
        "vram_shards_compromised",
        "Held shards a verification found corrupt or with an invalid seal.",
        s.compromised,
    )?;
    let m = &s.manager;
    counter(&r, "vram_seals_total", "Successful seals.", m.seals)?;
    counter(
        &r,
        "vram_seal_failures_total",
        "Seal attempts that failed.",
        m.seal_failures,
    )?;
    let verifications = IntCounterVec::new(
        Opts::new(
            "vram_verifications_total",
            "Verifications by result: passed, failed (corrupt bytes or an invalid seal), \
             incomplete (proved nothing, e.g. a device read error).",
        ),
        &["result"],
    )
    .map_err(prom_error)?;
    for (result, n) in [
        ("passed", m.verifications_passed),
        ("failed", m.verifications_failed),
        ("incomplete", m.verifications_incomplete),
    ] {
        verifications.with_label_values(&[result]).inc_by(n);
    }
    register(&r, verifications)?;
    let leases = IntCounterVec::new(
        Opts::new(
            "vram_leases_total",
            "Leases by result: granted (the pre-execution verification held), refused \
             (a compromised shard, or a verification that failed or could not run).",
        ),
        &["result"],
    )
    .map_err(prom_error)?;
    for (result, n) in [("granted", m.leases_granted), ("refused", m.leases_refused)] {
        leases.with_label_values(&[result]).inc_by(n);
    }
    register(&r, leases)?;
    counter(
        &r,
        "vram_lease_verify_nanoseconds_total",
        "Time spent verifying for leases, granted or refused.",
        m.lease_verify_nanos_total,
    )?;
    counter(
        &r,
        "vram_bytes_hashed_total",
        "Bytes hashed by seals and verifications.",
        m.bytes_hashed,
    )?;
    let sc = &s.scrub;
    counter(
        &r,
        "vram_scrub_sweeps_total",
        "Complete scrub sweeps over all held shards.",
        sc.sweeps,
    )?;
    counter(
        &r,
        "vram_scrub_leaves_checked_total",
        "Leaves re-read and hashed by the scrubber.",
        sc.leaves_checked,
    )?;
    counter(
        &r,
        "vram_scrub_bytes_total",
        "Bytes re-read and hashed by the scrubber.",
        sc.bytes_scrubbed,
    )?;
    counter(
        &r,
        "vram_scrub_seal_checks_total",
        "Seal checks by the scrubber (one per shard per sweep).",
        sc.seal_checks,
    )?;
    counter(
        &r,
        "vram_scrub_failures_total",
        "Integrity failures the scrubber found.",
        sc.failures,
    )?;
    if let Some(ms) = sc.last_sweep_unix_ms {
        // Whole seconds: alert on `time() - vram_scrub_last_sweep_timestamp_seconds`.
        gauge(
            &r,
            "vram_scrub_last_sweep_timestamp_seconds",
            "When the last complete scrub sweep ended (Unix time).",
            ms / 1000,
        )?;
    }
    counter(
        &r,
        "vram_audit_records_total",
        "Audit records written, the log's own included.",
        s.audit.records,
    )?;
    counter(
        &r,
        "vram_audit_write_failures_total",
        "Audit record writes or flushes that failed.",
        s.audit.failures,
    )?;
    counter(
        &r,
        "vram_audit_records_lost_total",
        "Audit records the manager tried to write that are not in the log.",
        m.audit_records_lost.max(s.audit.lost),
    )?;
    let mut out = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&r.gather(), &mut out)
        .map_err(prom_error)?;
    String::from_utf8(out).map_err(|_| CliError::env("metrics: the encoder wrote invalid UTF-8"))
}

/// Serves `GET /metrics` on `addr` until `stop` is set; `snapshot` is called
/// per scrape. Binding happens before this returns, so a bad address is an
/// error at start, not a silent missing endpoint.
pub(crate) struct Listener {
    server: tiny_http::Server,
    /// The bound address (port 0 resolved).
    pub(crate) addr: SocketAddr,
}

impl Listener {
    pub(crate) fn bind(addr: &str) -> Result<Self, CliError> {
        let wanted: SocketAddr = addr.parse().map_err(|_| {
            CliError::usage(format!(
                "--metrics-listen: expected HOST:PORT with an IP address (e.g. 127.0.0.1:9464), got `{}`",
                vram_validation::escape_for_log(addr, 60)
            ))
        })?;
        let server = tiny_http::Server::http(wanted)
            .map_err(|e| CliError::env(format!("--metrics-listen {wanted}: cannot listen: {e}")))?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| CliError::env("--metrics-listen: not an IP listener"))?;
        Ok(Self { server, addr })
    }

    /// Answers scrapes until `stop` is set (checked every 100 ms).
    pub(crate) fn serve(&self, stop: &AtomicBool, snapshot: &dyn Fn() -> HoldSnapshot) {
        while !stop.load(Ordering::SeqCst) {
            let request = match self.server.recv_timeout(Duration::from_millis(100)) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener: receive failed");
                    continue;
                }
            };
            let path = request.url().split('?').next().unwrap_or_default();
            let response = match (request.method(), path) {
                (tiny_http::Method::Get, "/metrics") => match render(&snapshot()) {
                    Ok(body) => text_response(200, body, CONTENT_TYPE),
                    Err(e) => text_response(500, e.message, "text/plain; charset=utf-8"),
                },
                (tiny_http::Method::Get, _) => text_response(
                    404,
                    "metrics are at /metrics\n".into(),
                    "text/plain; charset=utf-8",
                ),
                _ => text_response(405, "only GET\n".into(), "text/plain; charset=utf-8"),
            };
            if let Err(e) = request.respond(response) {
                tracing::debug!(error = %e, "metrics listener: a scraper went away");
            }
        }
    }
}

fn text_response(
    code: u16,
    body: String,
    content_type: &str,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let response = tiny_http::Response::from_string(body).with_status_code(code);
    match tiny_http::Header::from_bytes("Content-Type", content_type) {
        Ok(h) => response.with_header(h),
        Err(()) => response,
    }
}

/// A node_exporter textfile, replaced atomically: written to a temporary
/// file beside it, flushed to disk, then renamed over it, so the collector
/// never reads half a file.
pub(crate) struct TextFile {
    path: PathBuf,
    tmp: PathBuf,
}

impl TextFile {
    pub(crate) fn new(path: &Path) -> Result<Self, CliError> {
        let name = path.file_name().ok_or_else(|| {
            CliError::usage(format!(
                "--metrics-file {}: names no file",
                shown_path(path)
            ))
        })?;
        if path.extension().is_none_or(|e| e != "prom") {
            tracing::warn!(
                "--metrics-file: node_exporter's textfile collector reads only *.prom files"
            );
        }
        // A name node_exporter skips (not *.prom), unique to this process.
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.tmp", std::process::id()));
        Ok(Self {
            path: path.to_path_buf(),
            tmp: path.with_file_name(tmp_name),
        })
    }

    pub(crate) fn write(&self, snapshot: &HoldSnapshot) -> Result<(), CliError> {
        let body = render(snapshot)?;
        let result = (|| {
            let mut f = std::fs::File::create(&self.tmp)?;
            f.write_all(body.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&self.tmp, &self.path)
        })();
        result.map_err(|e| {
            let _ = std::fs::remove_file(&self.tmp);
            io_error(&self.path, &e)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn snapshot() -> HoldSnapshot {
        HoldSnapshot {
            shards: 2,
            bytes: 3 << 20,
            compromised: 0,
            device_kind: "mock",
            manager: MetricsSnapshot {
                seals: 2,
                verifications_passed: 5,
                verifications_failed: 1,
                ..MetricsSnapshot::default()
            },
            scrub: ScrubStats {
                sweeps: 3,
                last_sweep_unix_ms: Some(1_700_000_000_123),
                ..ScrubStats::default()
            },
            audit: SinkStats::default(),
        }
    }

    #[test]
    fn every_family_is_typed_and_valued() {
        let text = render(&snapshot()).unwrap();
        for needle in [
            "# TYPE vram_shards_held gauge",
            "vram_shards_held 2",
            "vram_shard_bytes_held 3145728",
            "# TYPE vram_verifications_total counter",
            "vram_verifications_total{result=\"passed\"} 5",
            "vram_verifications_total{result=\"failed\"} 1",
            "vram_scrub_sweeps_total 3",
            "vram_scrub_last_sweep_timestamp_seconds 1700000000",
            "vram_audit_records_lost_total 0",
        ] {
            assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
        }
    }

    #[test]
    fn no_sweep_yet_means_no_timestamp_rather_than_zero() {
        let mut s = snapshot();
        s.scrub.last_sweep_unix_ms = None;
        let text = render(&s).unwrap();
        assert!(!text.contains("vram_scrub_last_sweep_timestamp_seconds"));
    }

    #[test]
    fn the_textfile_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vram.prom");
        let f = TextFile::new(&path).unwrap();
        f.write(&snapshot()).unwrap();
        let mut s = snapshot();
        s.shards = 7;
        f.write(&s).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("vram_shards_held 7"));
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_bad_listen_address_is_a_usage_error() {
        let e = Listener::bind("localhost:notaport").err().unwrap();
        assert_eq!(e.code, crate::exit::USAGE);
    }
}
