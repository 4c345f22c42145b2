//! A byte of the sealed weights corrupted behind the seal's back while the
//! server runs (the mock device, through the worker this server is built
//! on): the next request is refused with the tensor named, `/health` turns
//! 503, and the server stops with the outcome the binary exits 1 on.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::snapshot::{random_weights, safetensors_bytes, write_snapshot};
use support::{get, post, PATIENCE};
use vram_residency::LeasePolicy;
use vram_serve::worker::{self, WorkerConfig};
use vram_serve::{Engines, Limits, ServeError, Server, Stopped};

/// The byte offset and length of a tensor's data in the sealed file.
fn offset_of(name: &str, seed: u64) -> (u64, u64) {
    let bytes = safetensors_bytes(&random_weights(seed));
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    let header: serde_json::Value =
        serde_json::from_slice(&bytes[8..8 + header_len as usize]).unwrap();
    let offsets = &header[name]["data_offsets"];
    let (a, b) = (offsets[0].as_u64().unwrap(), offsets[1].as_u64().unwrap());
    (8 + header_len + a, b - a)
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .unwrap_or_else(|| panic!("no `{line_start}` in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_corrupt_byte_is_refused_with_the_tensor_named_then_health_503_then_the_server_stops() {
    let seed = 44;
    let dir = tempfile::tempdir().unwrap();
    write_snapshot(dir.path(), seed);
    let worker = worker::open(&WorkerConfig {
        device: "mock".into(),
        quiet: true,
        ..WorkerConfig::default()
    })
    .unwrap();
    let location = worker::locate(dir.path().to_str().unwrap(), true).unwrap();
    let (engine, held) =
        vram_serve::embedding_engine(&worker, &location, LeasePolicy::Sampled { leaves: 1 })
            .unwrap();
    let limits = Limits {
        // Long enough for the test's requests after the refusal on a
        // loaded machine; the stop is awaited below.
        compromised_drain: Duration::from_secs(5),
        ..Limits::default()
    };
    let server = Server::new(
        location.model_ref.to_string(),
        Engines {
            embeddings: Some(engine),
            text: None,
        },
        Some(held),
        limits,
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = server.clone();
    let handle =
        runtime.spawn(async move { serving.serve(listener, std::future::pending()).await });

    let r = post(addr, "/v1/embeddings", &json!({"input": "hello world"}));
    assert_eq!(r.status, 200, "{}", r.text());

    let name = "encoder.layer.0.attention.self.key.weight";
    let (start, len) = offset_of(name, seed);
    worker.corrupt_latest(start + len / 2, 0x10).unwrap();

    let r = post(addr, "/v1/embeddings", &json!({"input": "hello world"}));
    assert_eq!(r.status, 503, "{}", r.text());
    let e = r.json();
    assert_eq!(e["error"]["code"], "model_compromised", "{e}");
    let message = e["error"]["message"].as_str().unwrap();
    assert!(message.contains(name), "the tensor is named: {message}");
    assert!(e.get("data").is_none());

    let health = get(addr, "/health");
    assert_eq!(health.status, 503, "{}", health.text());
    assert_eq!(health.json()["status"], "compromised");
    assert!(health.json()["reason"].as_str().unwrap().contains(name));
    // No more computing on those weights, whatever the request.
    let r = post(addr, "/v1/embeddings", &json!({"input": "a dog"}));
    assert_eq!(r.status, 503, "{}", r.text());
    let metrics = get(addr, "/metrics").text();
    assert_eq!(
        metric(&metrics, "vram_shards_compromised "),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "vram_leases_total{result=\"refused\"} "),
        1.0
    );

    let stopped = runtime
        .block_on(async { tokio::time::timeout(PATIENCE, handle).await })
        .expect("the server stops after a refused lease")
        .unwrap()
        .unwrap();
    let Stopped::Compromised(reason) = stopped else {
        panic!("{stopped:?}");
    };
    assert!(reason.contains(name), "{reason}");
    assert_eq!(server.compromised().as_deref(), Some(reason.as_str()));
    // What the binary exits with.
    assert_eq!(ServeError::Compromised(reason).exit_code(), 1);
}

/// The embedder reads host bytes of the leased weights: a CUDA worker is
/// refused before anything is sealed.
#[test]
fn the_embedder_refuses_a_device_it_cannot_read() {
    let e = vram_serve::unsupported_device("cuda");
    assert_eq!(e.exit_code(), 3);
    let message = e.to_string();
    assert!(message.contains("cannot run on cuda"), "{message}");
    assert!(message.contains("--device mock"), "{message}");
}
