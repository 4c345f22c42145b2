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
use std::sync::{Arc, Mutex};
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

/// The most bytes of a request head (request line and headers) the metrics
/// listener reads; a longer one is answered 431 and the connection closed.
/// (8 KiB is also the least hyper accepts as a connection's buffer.)
pub(crate) const MAX_REQUEST_HEAD_BYTES: usize = 8 * 1024;
/// The most connections the listener serves at once; a new one past it
/// closes the oldest, so idle connections cannot keep a scraper out.
pub(crate) const MAX_CONNECTIONS: usize = 128;
/// How long a client may take to send its request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection may last in all (head, answer, a slow reader).
const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);

/// What a connection asks the serving thread for: the metrics, rendered now.
type RenderRequest = tokio::sync::oneshot::Sender<Result<String, String>>;

/// The `--metrics-listen` endpoint: `GET /metrics` (and `HEAD`), `GET
/// /health`, nothing else. The process that serves it holds sealed weights,
/// so no scraper may grow it: request heads are bounded
/// ([`MAX_REQUEST_HEAD_BYTES`]), every connection has a deadline, at most
/// [`MAX_CONNECTIONS`] are open, and all of them are served by one thread
/// (hyper on a single-threaded tokio runtime). Binding happens in
/// [`Listener::bind`], before anything is sealed, so a bad address is an
/// error at start, not a silent missing endpoint.
pub(crate) struct Listener {
    listener: std::net::TcpListener,
    /// The bound address (port 0 resolved).
    pub(crate) addr: SocketAddr,
}

/// `HOST:PORT` with an IP address, or a bare `PORT` on 127.0.0.1.
fn listen_addr(addr: &str) -> Result<SocketAddr, CliError> {
    if let Ok(port) = addr.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    addr.parse().map_err(|_| {
        CliError::usage(format!(
            "--metrics-listen: expected PORT (on 127.0.0.1) or HOST:PORT with an IP address (e.g. 127.0.0.1:19464), got `{}`",
            vram_validation::escape_for_log(addr, 60)
        ))
    })
}

impl Listener {
    pub(crate) fn bind(addr: &str) -> Result<Self, CliError> {
        let wanted = listen_addr(addr)?;
        let listener = std::net::TcpListener::bind(wanted)
            .map_err(|e| CliError::env(format!("--metrics-listen {wanted}: cannot listen: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| CliError::env(format!("--metrics-listen {wanted}: {e}")))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| CliError::env(format!("--metrics-listen {wanted}: {e}")))?;
        Ok(Self { listener, addr })
    }

    /// Answers scrapes until `stop` is set (checked every 100 ms), on the
    /// calling thread; `snapshot` is called on it, once per scrape.
    pub(crate) fn serve(&self, stop: &AtomicBool, snapshot: &dyn Fn() -> HoldSnapshot) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "metrics listener: cannot start; no metrics are served");
                return;
            }
        };
        let listener = match self.listener.try_clone() {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "metrics listener: cannot start; no metrics are served");
                return;
            }
        };
        runtime.block_on(serve_until(listener, stop, snapshot));
        // Dropping the runtime ends every connection still open.
    }
}

/// Open connections, oldest first, each with the signal that closes it.
#[derive(Default)]
struct Connections {
    next_id: u64,
    open: std::collections::VecDeque<(u64, Arc<tokio::sync::Notify>)>,
}

impl Connections {
    fn lock(this: &Mutex<Self>) -> std::sync::MutexGuard<'_, Self> {
        this.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

async fn serve_until(
    listener: std::net::TcpListener,
    stop: &AtomicBool,
    snapshot: &dyn Fn() -> HoldSnapshot,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "metrics listener: cannot start; no metrics are served");
            return;
        }
    };
    let (render_tx, mut render_rx) = tokio::sync::mpsc::channel::<RenderRequest>(MAX_CONNECTIONS);
    let connections = Arc::new(Mutex::new(Connections::default()));
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
            }
            Some(reply) = render_rx.recv() => {
                let _ = reply.send(render(&snapshot()).map_err(|e| e.message));
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => connection(stream, &connections, &render_tx),
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::debug!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// Serves one connection on its own task, closing the oldest open one if
/// there are already [`MAX_CONNECTIONS`].
fn connection(
    stream: tokio::net::TcpStream,
    connections: &Arc<Mutex<Connections>>,
    renders: &tokio::sync::mpsc::Sender<RenderRequest>,
) {
    let evicted = Arc::new(tokio::sync::Notify::new());
    let id = {
        let mut c = Connections::lock(connections);
        if c.open.len() >= MAX_CONNECTIONS {
            if let Some((_, oldest)) = c.open.pop_front() {
                // Stored if its task is not waiting yet.
                oldest.notify_one();
            }
        }
        let id = c.next_id;
        c.next_id = c.next_id.wrapping_add(1);
        c.open.push_back((id, Arc::clone(&evicted)));
        id
    };
    let connections = Arc::clone(connections);
    let renders = renders.clone();
    tokio::spawn(async move {
        let service = hyper::service::service_fn(move |request| answer(request, renders.clone()));
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(MAX_REQUEST_HEAD_BYTES)
            .keep_alive(false);
        let served = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        tokio::select! {
            result = served => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "metrics listener: connection ended");
                }
            }
            () = evicted.notified() => {
                tracing::debug!("metrics listener: oldest connection closed for a new one");
            }
            () = tokio::time::sleep(CONNECTION_DEADLINE) => {
                tracing::debug!("metrics listener: connection past its deadline closed");
            }
        }
        Connections::lock(&connections)
            .open
            .retain(|(open, _)| *open != id);
    });
}

type Body = http_body_util::Full<bytes::Bytes>;

/// One request's answer. `HEAD /metrics` gets `GET`'s headers without the
/// body (hyper leaves the body out of a response to `HEAD`).
async fn answer(
    request: hyper::Request<hyper::body::Incoming>,
    renders: tokio::sync::mpsc::Sender<RenderRequest>,
) -> Result<hyper::Response<Body>, std::convert::Infallible> {
    use hyper::{Method, StatusCode};
    const PLAIN: &str = "text/plain; charset=utf-8";
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut r = response(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD\n".into(),
            PLAIN,
        );
        r.headers_mut().insert(
            hyper::header::ALLOW,
            hyper::header::HeaderValue::from_static("GET, HEAD"),
        );
        return Ok(r);
    }
    Ok(match request.uri().path() {
        "/metrics" => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let rendered = match renders.send(tx).await {
                Ok(()) => rx.await.ok(),
                Err(_) => None,
            };
            match rendered {
                Some(Ok(body)) => response(StatusCode::OK, body, CONTENT_TYPE),
                Some(Err(message)) => {
                    response(StatusCode::INTERNAL_SERVER_ERROR, message + "\n", PLAIN)
                }
                None => response(StatusCode::SERVICE_UNAVAILABLE, "stopping\n".into(), PLAIN),
            }
        }
        "/health" => response(StatusCode::OK, "ok\n".into(), PLAIN),
        _ => response(
            StatusCode::NOT_FOUND,
            "metrics are at /metrics\n".into(),
            PLAIN,
        ),
    })
}

fn response(
    code: hyper::StatusCode,
    body: String,
    content_type: &'static str,
) -> hyper::Response<Body> {
    let mut r = hyper::Response::new(Body::new(bytes::Bytes::from(body)));
    *r.status_mut() = code;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

/// A node_exporter textfile, replaced atomically: written to a temporary
/// file beside it (created exclusively, never through a symlink, under a
/// random name node_exporter skips), flushed to disk, then renamed over it,
/// so the collector never reads half a file and nobody who can write the
/// directory can point the write elsewhere.
pub(crate) struct TextFile {
    path: PathBuf,
    dir: PathBuf,
    name: std::ffi::OsString,
    /// The directory is writable by others but sticky: the file replaced
    /// must be ours.
    shared_sticky: bool,
}

/// Group or other write permission on a directory.
const WRITABLE_BY_OTHERS: u32 = 0o022;
/// The sticky bit: in such a directory only a file's owner may replace it.
const STICKY: u32 = 0o1000;

fn textfile_error(path: &Path, what: impl std::fmt::Display) -> CliError {
    CliError::env(format!("--metrics-file {}: {what}", shown_path(path)))
}

impl TextFile {
    /// Checks the path and its directory, and that a file can be created
    /// there, so a bad path fails at start (exit 3) rather than warning at
    /// every interval.
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
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let meta = std::fs::metadata(&dir).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => textfile_error(
                path,
                format_args!("its directory {} does not exist", shown_path(&dir)),
            ),
            _ => textfile_error(path, format_args!("its directory: {e}")),
        })?;
        if !meta.is_dir() {
            return Err(textfile_error(
                path,
                format_args!("{} is not a directory", shown_path(&dir)),
            ));
        }
        let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions());
        let shared = mode & WRITABLE_BY_OTHERS != 0;
        if shared && mode & STICKY == 0 {
            return Err(textfile_error(
                path,
                format_args!(
                    "its directory {} is writable by other users (mode {:o}) and not sticky: \
                     any of them could replace the file; use a directory only this service \
                     writes (e.g. its RuntimeDirectory=)",
                    shown_path(&dir),
                    mode & 0o7777
                ),
            ));
        }
        let file = Self {
            path: path.to_path_buf(),
            dir,
            name: name.to_os_string(),
            shared_sticky: shared,
        };
        // Can a file be created there? Tried now, then removed.
        let (tmp, f) = file.create_tmp()?;
        let ours = std::os::unix::fs::MetadataExt::uid(
            &f.metadata().map_err(|e| textfile_error(path, e))?,
        );
        drop(f);
        let _ = std::fs::remove_file(&tmp);
        file.check_replaceable(ours)?;
        Ok(file)
    }

    /// A new temporary file beside the target: `O_CREAT|O_EXCL|O_NOFOLLOW`
    /// under a random name, checked after opening, readable by the collector
    /// whatever the umask.
    fn create_tmp(&self) -> Result<(PathBuf, std::fs::File), CliError> {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let mut random = [0u8; 12];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random)
            .map_err(|_| textfile_error(&self.path, "no randomness for a temporary name"))?;
        // A name node_exporter skips (not *.prom).
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(&self.name);
        tmp_name.push(format!(".{}.tmp", vram_validation::hex::encode(&random)));
        let tmp = self.dir.join(tmp_name);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(|e| {
                textfile_error(
                    &self.path,
                    format_args!("cannot create a file beside it: {e}"),
                )
            })?;
        let checked = file.metadata().and_then(|m| {
            if m.is_file() && std::os::unix::fs::MetadataExt::nlink(&m) == 1 {
                file.set_permissions(std::fs::Permissions::from_mode(0o644))
            } else {
                Err(std::io::Error::other(
                    "not the new regular file just created",
                ))
            }
        });
        if let Err(e) = checked {
            let _ = std::fs::remove_file(&tmp);
            return Err(textfile_error(&self.path, e));
        }
        Ok((tmp, file))
    }

    /// In a shared sticky directory, a file already there must be ours
    /// (`uid`): another user's file is not replaced.
    fn check_replaceable(&self, uid: u32) -> Result<(), CliError> {
        if !self.shared_sticky {
            return Ok(());
        }
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if std::os::unix::fs::MetadataExt::uid(&m) != uid => Err(textfile_error(
                &self.path,
                "belongs to another user, in a directory others can write: not replaced",
            )),
            _ => Ok(()),
        }
    }

    pub(crate) fn write(&self, snapshot: &HoldSnapshot) -> Result<(), CliError> {
        let body = render(snapshot)?;
        let (tmp, mut file) = self.create_tmp()?;
        let result = (|| {
            file.write_all(body.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| textfile_error(&self.path, e))?;
            let ours = file.metadata().map_err(|e| textfile_error(&self.path, e))?;
            self.check_replaceable(std::os::unix::fs::MetadataExt::uid(&ours))?;
            std::fs::rename(&tmp, &self.path).map_err(|e| io_error(&self.path, &e))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

#[cfg(test)]
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
    fn a_bare_port_listens_on_loopback_only() {
        assert_eq!(
            listen_addr("19464").unwrap(),
            "127.0.0.1:19464".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            listen_addr("[::1]:0").unwrap(),
            "[::1]:0".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn a_bad_listen_address_is_a_usage_error() {
        let e = Listener::bind("localhost:notaport").err().unwrap();
        assert_eq!(e.code, crate::exit::USAGE);
    }
}
