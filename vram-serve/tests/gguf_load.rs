//! A bounded load on the `vram-serve` binary serving the tests' tiny GGUF
//! model on loopback: 8 concurrent streaming clients, 200 requests in all,
//! with `--max-concurrent 3`, so that some are answered 429. No request is
//! lost (each gets a whole stream ending in `[DONE]`, or a 429 with
//! `Retry-After`), the server's own counts agree with the clients', and the
//! process's peak resident memory stays within the model's size + 256 MiB.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss
)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{get, post, serve_in, text_model};

const CLIENTS: usize = 8;
const REQUESTS: usize = 200;
const MAX_CONCURRENT: usize = 3;
/// How long a client answered 429 waits before its next request.
const BACKOFF: Duration = Duration::from_millis(100);
/// The whole load must be done by then (it takes a few seconds).
const BOUND: Duration = Duration::from_secs(90);

/// How one request ended.
#[derive(Debug, Default)]
struct Tally {
    streamed: usize,
    busy: usize,
    failures: Vec<String>,
}

/// Peak resident memory of process `pid`, in bytes (`VmHWM`).
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

fn counted(metrics: &str, route: &str, status: &str) -> f64 {
    let prefix = format!("vram_serve_requests_total{{route=\"{route}\",status=\"{status}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[test]
fn eight_streaming_clients_lose_no_request_and_memory_stays_bounded() {
    let root = tempfile::tempdir().unwrap();
    let bytes = text_model::write(root.path(), "tiny-chat", 81);
    let server = serve_in(
        root.path(),
        &[
            "--model",
            "tiny-chat.gguf",
            "--max-concurrent",
            &MAX_CONCURRENT.to_string(),
        ],
    );
    let addr = server.addr;
    let tickets = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let start = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let tickets = Arc::clone(&tickets);
            let tally = Arc::clone(&tally);
            std::thread::spawn(move || loop {
                let n = tickets.fetch_add(1, Ordering::SeqCst);
                if n >= REQUESTS || start.elapsed() > BOUND {
                    return;
                }
                let (path, body) = if n.is_multiple_of(2) {
                    (
                        "/v1/chat/completions",
                        json!({"messages": [{"role": "user", "content": "hello"}],
                               "max_tokens": 16, "temperature": 0.8, "seed": n, "stream": true}),
                    )
                } else {
                    (
                        "/v1/completions",
                        json!({"prompt": "hello world", "max_tokens": 16,
                               "temperature": 0.8, "seed": n, "stream": true}),
                    )
                };
                let r = post(addr, path, &body);
                let text = r.text();
                let busy = {
                    let mut t = tally.lock().unwrap();
                    match r.status {
                        200 if text.trim_end().ends_with("data: [DONE]")
                            && !text.contains("\"error\"") =>
                        {
                            t.streamed += 1;
                            false
                        }
                        429 if r.header("retry-after").is_some()
                            && r.json()["error"]["code"].is_string() =>
                        {
                            t.busy += 1;
                            true
                        }
                        s => {
                            t.failures.push(format!("request {n}: {s} {text}"));
                            false
                        }
                    }
                };
                // A client told to retry waits before its next request
                // (shorter than `Retry-After`, to keep the test short).
                if busy {
                    std::thread::sleep(BACKOFF);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let elapsed = start.elapsed();
    let tally = Arc::into_inner(tally).unwrap().into_inner().unwrap();
    eprintln!(
        "load: {} streamed, {} answered 429, {} failed, in {elapsed:?}",
        tally.streamed,
        tally.busy,
        tally.failures.len()
    );
    assert!(elapsed <= BOUND, "the load took {elapsed:?}");
    assert!(tally.failures.is_empty(), "{:#?}", tally.failures);
    assert_eq!(tally.streamed + tally.busy, REQUESTS, "{tally:?}");
    assert!(tally.streamed > 0, "{tally:?}");
    assert!(
        tally.busy > 0,
        "8 clients on {MAX_CONCURRENT} slots met no 429: {tally:?}"
    );

    // The server counted what the clients saw, request for request.
    let metrics = get(addr, "/metrics").text();
    let served: f64 = ["/v1/chat/completions", "/v1/completions"]
        .iter()
        .map(|r| counted(&metrics, r, "200"))
        .sum();
    let refused: f64 = ["/v1/chat/completions", "/v1/completions"]
        .iter()
        .map(|r| counted(&metrics, r, "429"))
        .sum();
    assert_eq!(served, tally.streamed as f64, "{metrics}");
    assert_eq!(refused, tally.busy as f64, "{metrics}");

    // Still serving after the load.
    let r = post(
        addr,
        "/v1/completions",
        &json!({"prompt": "hello", "max_tokens": 2}),
    );
    assert_eq!(r.status, 200, "{}", r.text());

    match peak_rss(server.child.id()) {
        Some(peak) => {
            let bound = bytes.len() as u64 + (256 << 20);
            eprintln!(
                "load: peak resident memory {:.1} MiB (bound {:.1} MiB)",
                peak as f64 / (1 << 20) as f64,
                bound as f64 / (1 << 20) as f64
            );
            assert!(peak <= bound, "peak RSS {peak} over {bound}");
        }
        None => eprintln!(
            "WARNING: no /proc/PID/status VmHWM on this system: the memory bound was NOT checked"
        ),
    }
}
