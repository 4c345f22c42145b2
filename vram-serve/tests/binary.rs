//! The `vram-serve` binary on loopback, serving the tests' tiny BERT
//! snapshot on the mock device: embeddings, models, health, metrics, the
//! error answers and the refusals at start.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

mod support;

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::json;
use support::snapshot::{write_snapshot, HIDDEN};
use support::{get, output_within, post, request, serve_in, PATIENCE};
use vram_embed::{Embedder, ModelSnapshot, SafetensorsFile};

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// The library's own embedding of `text` on the file, for comparison.
fn expected(dir: &std::path::Path, text: &str) -> Vec<f32> {
    let snap = ModelSnapshot::open(dir).unwrap();
    let embedder = Embedder::new(&snap).unwrap();
    let weights = SafetensorsFile::read(&snap.weights_path()).unwrap();
    embedder.embed(&weights, text).unwrap().vector
}

/// Samples of one family, by their labels.
fn samples(text: &str, name: &str) -> BTreeMap<Vec<(String, String)>, f64> {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    scrape
        .samples
        .into_iter()
        .filter(|s| s.metric == name)
        .map(|s| {
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                other => panic!("{name}: unexpected {other:?}"),
            };
            let mut labels: Vec<(String, String)> = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            labels.sort();
            (labels, value)
        })
        .collect()
}

fn one(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut want: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    want.sort();
    *samples(text, name)
        .get(&want)
        .unwrap_or_else(|| panic!("no {name}{labels:?} in:\n{text}"))
}

#[test]
fn embeddings_models_health_and_metrics_over_loopback() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("tiny-bert");
    write_snapshot(&dir, 41);
    // Named relative to the working directory: the model reference (what
    // the seals record and /v1/models lists) is `tiny-bert`.
    let model = "tiny-bert";
    let mut server = serve_in(root.path(), &["--model", model]);
    let addr = server.addr;

    let health = get(addr, "/health");
    assert_eq!(health.status, 200, "{}", health.text());
    assert_eq!(health.json()["status"], "ok");

    let models = get(addr, "/v1/models");
    assert_eq!(models.status, 200);
    let models = models.json();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"].as_array().unwrap().len(), 1);
    assert_eq!(models["data"][0]["id"], model, "{models}");
    assert_eq!(models["data"][0]["object"], "model");

    // One text: the library's embedding, bit for bit through JSON.
    let r = post(
        addr,
        "/v1/embeddings",
        &json!({"model": model, "input": "hello world"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = r.json();
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], model);
    assert_eq!(body["data"][0]["object"], "embedding");
    assert_eq!(body["data"][0]["index"], 0);
    let v = floats(&body["data"][0]["embedding"]);
    assert_eq!(v.len(), HIDDEN);
    assert_eq!(bits(&v), bits(&expected(&dir, "hello world")));
    // [CLS] hello world [SEP]
    assert_eq!(body["usage"]["prompt_tokens"], 4, "{body}");
    assert_eq!(body["usage"]["total_tokens"], 4, "{body}");

    // A list, in order; base64 is the same floats, little-endian.
    let texts = ["the cat sat on the mat .", "a dog"];
    let r = post(addr, "/v1/embeddings", &json!({"input": texts}));
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    for (i, t) in texts.iter().enumerate() {
        assert_eq!(body["data"][i]["index"], i);
        let v = floats(&body["data"][i]["embedding"]);
        assert_eq!(bits(&v), bits(&expected(&dir, t)), "input {i}");
    }
    let r = post(
        addr,
        "/v1/embeddings",
        &json!({"input": "hello world", "encoding_format": "base64"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let b64 = r.json()["data"][0]["embedding"]
        .as_str()
        .unwrap()
        .to_owned();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let decoded: Vec<f32> = raw
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(bits(&decoded), bits(&expected(&dir, "hello world")));

    let metrics = get(addr, "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = metrics.text();
    let ok = [("route", "/v1/embeddings"), ("status", "200")];
    assert_eq!(one(&text, "vram_serve_requests_total", &ok), 3.0, "{text}");
    assert_eq!(
        one(
            &text,
            "vram_serve_requests_total",
            &[("route", "/health"), ("status", "200")]
        ),
        1.0
    );
    // Three requests, three leases, plus the full verification at start.
    assert_eq!(
        one(&text, "vram_leases_total", &[("result", "granted")]),
        4.0
    );
    assert_eq!(
        one(&text, "vram_leases_total", &[("result", "refused")]),
        0.0
    );
    assert_eq!(
        one(&text, "vram_serve_lease_verification_seconds_count", &[]),
        3.0
    );
    assert_eq!(one(&text, "vram_shards_held", &[]), 1.0);
    assert_eq!(one(&text, "vram_shards_compromised", &[]), 0.0);
    assert_eq!(one(&text, "vram_seals_total", &[]), 1.0);
    assert!(one(&text, "vram_shard_bytes_held", &[]) > 0.0);
    assert_eq!(
        one(
            &text,
            "vram_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("device_kind", "mock")
            ]
        ),
        1.0
    );
    assert_eq!(one(&text, "vram_serve_tokens_generated_total", &[]), 0.0);
    assert_eq!(
        one(&text, "vram_serve_time_to_first_token_seconds_count", &[]),
        0.0
    );

    // SIGTERM: a clean stop.
    let (code, stderr) = server.terminate();
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn bad_requests_get_openai_error_objects_and_serving_goes_on() {
    let root = tempfile::tempdir().unwrap();
    write_snapshot(&root.path().join("tiny-bert"), 42);
    let model = "tiny-bert";
    let server = serve_in(root.path(), &["--model", model, "--max-body", "4096"]);
    let addr = server.addr;

    let error = |r: &support::Reply, status: u16| {
        assert_eq!(r.status, status, "{}", r.text());
        let e = r.json();
        let obj = e["error"].as_object().unwrap_or_else(|| panic!("{e}"));
        for field in ["message", "type", "param", "code"] {
            assert!(obj.contains_key(field), "no `{field}` in {e}");
        }
        assert!(!e["error"]["message"].as_str().unwrap().is_empty());
        e
    };

    let r = request(addr, "POST", "/v1/embeddings", Some(b"{not json"));
    let e = error(&r, 400);
    assert_eq!(e["error"]["type"], "invalid_request_error");

    let r = post(
        addr,
        "/v1/embeddings",
        &json!({"input": "x", "colour": "red"}),
    );
    let e = error(&r, 400);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `colour`"),
        "{e}"
    );

    let r = post(addr, "/v1/embeddings", &json!({"model": model}));
    error(&r, 400);
    for input in [json!(""), json!([]), json!([1, 2, 3]), json!(7)] {
        let r = post(addr, "/v1/embeddings", &json!({ "input": input }));
        let e = error(&r, 400);
        assert_eq!(e["error"]["param"], "input", "{input}: {e}");
    }
    let r = post(
        addr,
        "/v1/embeddings",
        &json!({"input": "x", "dimensions": 7}),
    );
    let e = error(&r, 400);
    assert_eq!(e["error"]["param"], "dimensions");

    let r = post(
        addr,
        "/v1/embeddings",
        &json!({"input": "x", "model": "other/model"}),
    );
    let e = error(&r, 404);
    assert_eq!(e["error"]["code"], "model_not_found");

    let r = get(addr, "/v1/nothing-here");
    let e = error(&r, 404);
    assert_eq!(e["error"]["code"], "unknown_url");

    let r = get(addr, "/v1/embeddings");
    error(&r, 405);

    // An embedding model generates no text.
    let r = post(addr, "/v1/completions", &json!({"prompt": "hello"}));
    let e = error(&r, 404);
    assert_eq!(e["error"]["code"], "model_not_supported");

    // Over --max-body, declared or not.
    let big = json!({ "input": "hello ".repeat(1000) });
    let r = post(addr, "/v1/embeddings", &big);
    let e = error(&r, 413);
    assert_eq!(e["error"]["code"], "request_too_large");

    // Still serving.
    let r = post(addr, "/v1/embeddings", &json!({"input": "hello world"}));
    assert_eq!(r.status, 200, "{}", r.text());
    let metrics = get(addr, "/metrics").text();
    for (route, status, n) in [
        ("/v1/embeddings", "400", 8.0),
        ("/v1/embeddings", "404", 1.0),
        ("/v1/embeddings", "413", 1.0),
        ("/v1/embeddings", "405", 1.0),
        ("/v1/embeddings", "200", 1.0),
        ("unmatched", "404", 1.0),
        ("/v1/completions", "404", 1.0),
    ] {
        assert_eq!(
            one(
                &metrics,
                "vram_serve_requests_total",
                &[("route", route), ("status", status)]
            ),
            n,
            "{route} {status}:\n{metrics}"
        );
    }
}

#[test]
fn engines_that_cannot_run_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    write_snapshot(dir.path(), 43);
    let bin = assert_cmd::cargo::cargo_bin("vram-serve");
    // A file named .gguf that is no GGUF model: refused at start, said clearly.
    let gguf = dir.path().join("tiny.gguf");
    std::fs::write(&gguf, b"GGUF").unwrap();
    let mut command = std::process::Command::new(&bin);
    command
        .args(["--device", "mock", "--listen", "127.0.0.1:0", "--model"])
        .arg(&gguf);
    let out = output_within(command, PATIENCE);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("text engine: "), "{stderr}");
    assert!(out.stdout.is_empty(), "it never listened");

    // The embedder on CUDA: refused at start, before sealing (on a machine
    // without a GPU, `--device cuda` is refused by the device selection).
    let mut command = std::process::Command::new(&bin);
    command
        .args(["--device", "cuda", "--listen", "127.0.0.1:0", "--model"])
        .arg(dir.path());
    let out = output_within(command, PATIENCE);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("the BERT embedder cannot run on cuda")
            || stderr.contains("no CUDA device can be used"),
        "{stderr}"
    );
    if stderr.contains("no CUDA device can be used") {
        eprintln!(
            "NOTE: no CUDA device here: the embedder's refusal of CUDA is checked in-process only"
        );
    }
    assert!(out.stdout.is_empty());

    // Usage: limits of zero, a bad address.
    for args in [["--max-concurrent", "0"], ["--listen", "localhost:x"]] {
        let mut command = std::process::Command::new(&bin);
        command
            .args(["--device", "mock", "--model"])
            .arg(dir.path())
            .args(args);
        let out = output_within(command, PATIENCE);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = PATIENCE;
}

/// A client that stalls mid-body is answered 408 once `--request-timeout`
/// has passed; a request head over 64 KiB is answered 431; serving goes on.
#[test]
fn slow_bodies_and_huge_heads_are_cut_off() {
    use std::io::{Read, Write};
    let root = tempfile::tempdir().unwrap();
    write_snapshot(&root.path().join("tiny-bert"), 45);
    let server = serve_in(
        root.path(),
        &["--model", "tiny-bert", "--request-timeout", "1"],
    );
    let addr = server.addr;

    let mut s = std::net::TcpStream::connect_timeout(&addr, PATIENCE).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.set_write_timeout(Some(PATIENCE)).unwrap();
    s.write_all(
        b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\nConnection: close\r\n\r\n{\"input\": ",
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"timeout\""), "{text}");

    let mut s = std::net::TcpStream::connect_timeout(&addr, PATIENCE).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.set_write_timeout(Some(PATIENCE)).unwrap();
    let head = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Filler: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let _ = s.write_all(head.as_bytes());
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");

    let r = get(addr, "/health");
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Weights the model cannot use (a tensor missing) are refused at start,
/// with the tensor named and exit 1, before anything listens.
#[test]
fn weights_the_model_cannot_use_are_refused_at_start() {
    use support::snapshot::{random_weights, safetensors_bytes, write_snapshot_with};
    let dir = tempfile::tempdir().unwrap();
    let name = "encoder.layer.1.output.dense.weight";
    let mut w = random_weights(46);
    w.retain(|(n, _, _)| n != name);
    write_snapshot_with(
        dir.path(),
        &safetensors_bytes(&w),
        "pooling_mode_mean_tokens",
    );
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("vram-serve"));
    command
        .args(["--device", "mock", "--listen", "127.0.0.1:0", "--model"])
        .arg(dir.path());
    let out = output_within(command, PATIENCE);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(name), "{stderr}");
    assert!(out.stdout.is_empty(), "it never listened");
}
