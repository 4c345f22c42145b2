//! The worker's scenarios as Gherkin feature files (`tests/features/*.feature`),
//! readable without reading Rust, run by cucumber as part of the plain test
//! run (`harness = false`). Steps build the server in-process on the mock
//! device, through the worker the binary builds (so that a byte of device
//! memory can be corrupted behind the seal's back), and speak HTTP to it
//! over loopback.
//!
//! A failing scenario prints its steps, the failed one marked, and the run
//! exits non-zero; so does a step without a definition (`fail_on_skipped`).
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    unused_qualifications
)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use cucumber::{given, then, when, World as _};
use serde_json::json;
use support::{get, post, text_model, Reply, PATIENCE};
use vram_residency::LeasePolicy;
use vram_serve::worker::{self, Worker, WorkerConfig};
use vram_serve::{Engines, Limits, ServeError, Server, Stopped};

/// One scenario: the model file, the worker it is sealed on, the server
/// serving it, and the last answer.
#[derive(cucumber::World, Default)]
struct Serving {
    dir: Option<tempfile::TempDir>,
    bytes: Vec<u8>,
    worker: Option<Worker>,
    runtime: Option<tokio::runtime::Runtime>,
    handle: Option<tokio::task::JoinHandle<Result<Stopped, ServeError>>>,
    addr: Option<SocketAddr>,
    last: Option<Reply>,
}

impl std::fmt::Debug for Serving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serving")
            .field("addr", &self.addr)
            .field("last", &self.last.as_ref().map(|r| r.status))
            .finish_non_exhaustive()
    }
}

impl Serving {
    fn addr(&self) -> SocketAddr {
        self.addr.expect("a `served on loopback` step first")
    }

    fn last(&self) -> &Reply {
        self.last.as_ref().expect("a request first")
    }
}

#[given("a tiny llama GGUF model with a byte-level BPE tokenizer and a chat template")]
fn a_tiny_model(w: &mut Serving) {
    let dir = tempfile::tempdir().unwrap();
    w.bytes = text_model::write_of(dir.path(), "tiny-chat", text_model::WIDE, 71);
    w.dir = Some(dir);
}

#[given(
    "the model is sealed on a mock device and served on loopback, each request under a full lease"
)]
fn sealed_and_served(w: &mut Serving) {
    let worker = worker::open(&WorkerConfig {
        device: "mock".into(),
        quiet: true,
        ..WorkerConfig::default()
    })
    .unwrap();
    let path = w.dir.as_ref().unwrap().path().join("tiny-chat.gguf");
    let engine =
        vram_serve::text_engine(&worker, path.to_str().unwrap(), LeasePolicy::Full).unwrap();
    let limits = Limits {
        // Long enough for the requests after the refusal on a loaded
        // machine; the stop is awaited by the last step.
        compromised_drain: Duration::from_secs(5),
        ..Limits::default()
    };
    let server = Server::new(
        engine.model_id().to_owned(),
        Engines {
            embeddings: None,
            text: Some(engine),
        },
        None,
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
    w.addr = Some(listener.local_addr().unwrap());
    w.handle =
        Some(runtime.spawn(async move { server.serve(listener, std::future::pending()).await }));
    w.runtime = Some(runtime);
    w.worker = Some(worker);
}

#[when("a chat completion is requested")]
fn chat_requested(w: &mut Serving) {
    let body = json!({
        "messages": [{"role": "user", "content": "hello world"}],
        "max_tokens": 8, "temperature": 0
    });
    w.last = Some(post(w.addr(), "/v1/chat/completions", &body));
}

#[when("a completion is requested")]
fn completion_requested(w: &mut Serving) {
    let body = json!({"prompt": "hello", "max_tokens": 4});
    w.last = Some(post(w.addr(), "/v1/completions", &body));
}

#[then("it is answered 200 with an assistant message")]
fn answered_200(w: &mut Serving) {
    let r = w.last();
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["choices"][0]["message"]["role"], "assistant", "{body}");
    assert!(
        body["choices"][0]["message"]["content"].is_string(),
        "{body}"
    );
    assert!(
        body["usage"]["completion_tokens"].as_u64().unwrap() >= 1,
        "{body}"
    );
}

#[then("the health check answers 200")]
fn health_200(w: &mut Serving) {
    let r = get(w.addr(), "/health");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "ok");
}

#[when(expr = "one byte of tensor {string} is flipped in device memory")]
fn flip(w: &mut Serving, tensor: String) {
    let (start, len) = text_model::tensor_range(&w.bytes, &tensor);
    w.worker
        .as_ref()
        .unwrap()
        .corrupt_latest(start + len / 2, 0x10)
        .unwrap();
}

#[then(expr = "it is answered {int} with the code {string} naming {string}")]
fn answered_error(w: &mut Serving, status: u16, code: String, tensor: String) {
    let r = w.last();
    assert_eq!(r.status, status, "{}", r.text());
    let e = r.json();
    assert_eq!(e["error"]["code"], code.as_str(), "{e}");
    let message = e["error"]["message"].as_str().unwrap();
    assert!(message.contains(&tensor), "the tensor is named: {message}");
    assert!(e.get("choices").is_none(), "{e}");
}

#[then("the refusal names no other tensor")]
fn one_tensor(w: &mut Serving) {
    let e = w.last().json();
    let message = e["error"]["message"].as_str().unwrap();
    assert_eq!(
        message.matches(".weight, bytes ").count(),
        1,
        "one tensor named: {message}"
    );
    assert!(!message.contains("GGUF header"), "{message}");
}

#[then(expr = "the health check answers 503 naming {string}")]
fn health_503(w: &mut Serving, tensor: String) {
    let r = get(w.addr(), "/health");
    assert_eq!(r.status, 503, "{}", r.text());
    let body = r.json();
    assert_eq!(body["status"], "compromised", "{body}");
    assert!(body["reason"].as_str().unwrap().contains(&tensor), "{body}");
}

#[then(expr = "the server stops as compromised, naming {string}, with exit code {int}")]
fn stops(w: &mut Serving, tensor: String, code: u8) {
    let handle = w.handle.take().unwrap();
    let runtime = w.runtime.as_ref().unwrap();
    let stopped = runtime
        .block_on(async { tokio::time::timeout(PATIENCE, handle).await })
        .expect("the server stops after a refused lease")
        .unwrap()
        .unwrap();
    let Stopped::Compromised(reason) = stopped else {
        panic!("{stopped:?}");
    };
    assert!(reason.contains(&tensor), "{reason}");
    // What the binary exits with.
    assert_eq!(ServeError::Compromised(reason).exit_code(), code);
}

fn main() {
    let features = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/features");
    futures::executor::block_on(
        Serving::cucumber()
            // Each scenario runs a server: one at a time keeps their threads
            // from competing on a small machine.
            .max_concurrent_scenarios(1)
            .fail_on_skipped()
            // Arguments are cargo's (`cargo test -q ...`), not cucumber's.
            .with_default_cli()
            .run_and_exit(features),
    );
}
