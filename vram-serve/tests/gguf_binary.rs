//! The `vram-serve` binary serving a GGUF language model on loopback: a tiny
//! llama the test writes (random Q4_1 weights, a byte-level BPE tokenizer
//! with merges, BOS/EOS ids and a ChatML template in its header), sealed on
//! the mock device. Completions whole and streamed, chat streamed as
//! server-sent events, `max_tokens`, `stop`, `seed`, and the error answers,
//! each followed by a request that still succeeds.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

mod support;

use std::net::SocketAddr;

use serde_json::{json, Value};
use support::text_model::{self, CONTEXT};
use support::{get, output_within, post, request, serve_in, Reply, PATIENCE};

/// The data of each server-sent event, in order.
fn sse(r: &Reply) -> Vec<String> {
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream")),
        "{:?}",
        r.headers
    );
    let text = r.text();
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let data: Vec<&str> = e
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            assert!(!data.is_empty(), "an event without data: {e:?} in {text}");
            data.join("\n")
        })
        .collect()
}

/// The JSON chunks of a stream that ends in `[DONE]`.
fn chunks(r: &Reply) -> Vec<Value> {
    let events = sse(r);
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap_or_else(|err| panic!("{err}: {e}")))
        .collect()
}

fn completion(addr: SocketAddr, body: &Value) -> Value {
    let r = post(addr, "/v1/completions", body);
    assert_eq!(r.status, 200, "{body}: {}", r.text());
    r.json()
}

fn text_of(answer: &Value) -> String {
    answer["choices"][0]["text"].as_str().unwrap().to_owned()
}

/// A request that succeeds: the server still serves.
fn still_serving(addr: SocketAddr) {
    let a = completion(addr, &json!({"prompt": "hello", "max_tokens": 2}));
    assert_eq!(a["object"], "text_completion");
}

fn serve_tiny(seed: u64, args: &[&str]) -> (tempfile::TempDir, support::Serving, String) {
    let root = tempfile::tempdir().unwrap();
    text_model::write(root.path(), "tiny-chat", seed);
    let mut all = vec!["--model", "tiny-chat.gguf"];
    all.extend_from_slice(args);
    let server = serve_in(root.path(), &all);
    let models = get(server.addr, "/v1/models");
    assert_eq!(models.status, 200, "{}", models.text());
    let id = models.json()["data"][0]["id"].as_str().unwrap().to_owned();
    (root, server, id)
}

#[test]
fn completions_and_a_streamed_chat_are_generated_on_the_sealed_gguf() {
    let (_root, mut server, model) = serve_tiny(61, &[]);
    let addr = server.addr;
    assert!(model.contains("tiny-chat"), "{model}");
    let health = get(addr, "/health");
    assert_eq!(health.status, 200, "{}", health.text());

    // Greedy, whole: the shape OpenAI clients read, the tokenizer's count.
    let long = completion(
        addr,
        &json!({"model": model, "prompt": "hello world", "max_tokens": 12, "temperature": 0}),
    );
    assert_eq!(long["object"], "text_completion", "{long}");
    assert_eq!(long["model"], model.as_str());
    assert!(long["id"].as_str().unwrap().starts_with("cmpl"), "{long}");
    // `hello` and `Ġworld` are merged tokens; the metadata adds no BOS.
    assert_eq!(long["usage"]["prompt_tokens"], 2, "{long}");
    let generated = long["usage"]["completion_tokens"].as_u64().unwrap();
    let finish = long["choices"][0]["finish_reason"].as_str().unwrap();
    assert!((1..=12).contains(&generated), "{long}");
    assert_eq!(
        finish == "length",
        generated == 12,
        "12 tokens end with `length`, fewer with the end-of-generation token: {long}"
    );
    assert_eq!(
        long["usage"]["total_tokens"].as_u64().unwrap(),
        2 + generated
    );
    let long_text = text_of(&long);
    // Greedy decoding of the same weights gives the same answer.
    let again = completion(
        addr,
        &json!({"prompt": "hello world", "max_tokens": 12, "temperature": 0}),
    );
    assert_eq!(text_of(&again), long_text);

    // `max_tokens`: fewer tokens, the start of the same answer.
    let short = completion(
        addr,
        &json!({"prompt": "hello world", "max_tokens": 3, "temperature": 0}),
    );
    assert!(short["usage"]["completion_tokens"].as_u64().unwrap() <= 3);
    if generated > 3 {
        assert_eq!(short["choices"][0]["finish_reason"], "length", "{short}");
        assert_eq!(short["usage"]["completion_tokens"], 3, "{short}");
    }
    let short_text = text_of(&short);
    assert!(
        long_text.starts_with(short_text.trim_end_matches('\u{FFFD}')),
        "{short_text:?} does not begin {long_text:?}"
    );

    // `stop`: the answer ends before the first occurrence of the stop string.
    let chars: Vec<char> = long_text.chars().collect();
    let stop = chars
        .iter()
        .skip(1)
        .find(|c| **c != '\u{FFFD}')
        .unwrap_or_else(|| panic!("the greedy answer {long_text:?} is too short to pick a stop"))
        .to_string();
    let cut = &long_text[..long_text.find(&stop).unwrap()];
    let stopped = completion(
        addr,
        &json!({"prompt": "hello world", "max_tokens": 12, "temperature": 0, "stop": [stop]}),
    );
    assert_eq!(text_of(&stopped), cut, "stop {stop:?} in {long_text:?}");
    assert_eq!(stopped["choices"][0]["finish_reason"], "stop", "{stopped}");

    // `seed` with temperature > 0: the same seed, the same text; another
    // seed samples another (one of three differs, to leave nothing to chance
    // on a model whose sampled answers could meet).
    let sampled = |seed: u64| {
        text_of(&completion(
            addr,
            &json!({"prompt": "hello world", "max_tokens": 16, "temperature": 1.5, "seed": seed}),
        ))
    };
    let first = sampled(11);
    assert_eq!(sampled(11), first, "seed 11 twice");
    assert!(
        [12, 13, 14].iter().any(|s| sampled(*s) != first),
        "seeds 12, 13 and 14 all gave seed 11's {first:?}"
    );

    // A streamed completion: the same greedy text as the whole answer.
    let r = post(
        addr,
        "/v1/completions",
        &json!({"prompt": "hello world", "max_tokens": 12, "temperature": 0, "stream": true}),
    );
    let streamed = chunks(&r);
    let text: String = streamed
        .iter()
        .map(|c| c["choices"][0]["text"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(text, long_text);
    assert_eq!(
        streamed.last().unwrap()["choices"][0]["finish_reason"],
        finish
    );

    // Chat: the template from the sealed header, whole and streamed.
    let messages = json!([{"role": "user", "content": "hello"}]);
    let whole = post(
        addr,
        "/v1/chat/completions",
        &json!({"messages": messages, "max_tokens": 10, "temperature": 0}),
    );
    assert_eq!(whole.status, 200, "{}", whole.text());
    let whole = whole.json();
    assert_eq!(whole["object"], "chat.completion");
    assert_eq!(whole["choices"][0]["message"]["role"], "assistant");
    // <|im_start|> u s e r \n hello <|im_end|> \n <|im_start|> a s s i s t a n t \n
    assert_eq!(
        whole["usage"]["prompt_tokens"],
        1 + 4 + 1 + 1 + 1 + 1 + 1 + 9 + 1
    );
    let r = post(
        addr,
        "/v1/chat/completions",
        &json!({
            "model": model, "messages": messages, "max_tokens": 10, "temperature": 0,
            "stream": true, "stream_options": {"include_usage": true}
        }),
    );
    let c = chunks(&r);
    assert!(c.len() >= 3, "{c:?}");
    let id = c[0]["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl"), "{id}");
    for chunk in &c {
        assert_eq!(chunk["object"], "chat.completion.chunk", "{chunk}");
        assert_eq!(chunk["id"], id, "one id for the whole stream");
        assert_eq!(chunk["model"], model.as_str());
    }
    assert_eq!(c[0]["choices"][0]["delta"]["role"], "assistant", "{}", c[0]);
    // The last chunk is the usage (no choices); the one before, the reason.
    let usage = c.last().unwrap();
    assert_eq!(usage["choices"], json!([]), "{usage}");
    assert_eq!(usage["usage"], whole["usage"], "{usage}");
    let reason = &c[c.len() - 2];
    assert_eq!(
        reason["choices"][0]["finish_reason"],
        whole["choices"][0]["finish_reason"]
    );
    let content: String = c
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        content,
        whole["choices"][0]["message"]["content"].as_str().unwrap()
    );

    // SIGTERM: a clean stop.
    let (code, stderr) = server.terminate();
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn bad_text_requests_get_openai_error_objects_and_serving_goes_on() {
    let (_root, server, model) = serve_tiny(62, &["--max-body", "4096"]);
    let addr = server.addr;

    let error = |r: &Reply, status: u16| {
        assert_eq!(r.status, status, "{}", r.text());
        let e = r.json();
        let obj = e["error"].as_object().unwrap_or_else(|| panic!("{e}"));
        for field in ["message", "type", "param", "code"] {
            assert!(obj.contains_key(field), "no `{field}` in {e}");
        }
        assert!(!e["error"]["message"].as_str().unwrap().is_empty());
        still_serving(addr);
        e
    };

    // Malformed JSON.
    for path in ["/v1/completions", "/v1/chat/completions"] {
        let r = request(addr, "POST", path, Some(b"{\"prompt\": "));
        let e = error(&r, 400);
        assert_eq!(e["error"]["type"], "invalid_request_error", "{path}: {e}");
    }

    // An unknown field (the API is strict about its fields).
    let r = post(
        addr,
        "/v1/completions",
        &json!({"prompt": "hello", "colour": "red"}),
    );
    let e = error(&r, 400);
    let message = e["error"]["message"].as_str().unwrap();
    assert!(message.contains("unknown field `colour`"), "{e}");
    let r = post(
        addr,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "hi", "mood": "x"}]}),
    );
    error(&r, 400);

    // A prompt longer than the context (one token per byte `x`).
    let long = "x".repeat(CONTEXT as usize + 20);
    let r = post(
        addr,
        "/v1/completions",
        &json!({"prompt": long, "max_tokens": 1}),
    );
    let e = error(&r, 400);
    assert_eq!(e["error"]["code"], "context_length_exceeded", "{e}");
    assert_eq!(e["error"]["param"], "prompt", "{e}");
    let r = post(
        addr,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": long}], "max_tokens": 1}),
    );
    let e = error(&r, 400);
    assert_eq!(e["error"]["code"], "context_length_exceeded", "{e}");
    assert_eq!(e["error"]["param"], "messages", "{e}");

    // `max_tokens` over the context, or zero.
    for max in [CONTEXT + 1, 0] {
        let r = post(
            addr,
            "/v1/completions",
            &json!({"prompt": "hello", "max_tokens": max}),
        );
        let e = error(&r, 400);
        assert_eq!(e["error"]["param"], "max_tokens", "{e}");
    }
    let r = post(
        addr,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": CONTEXT + 1}),
    );
    let e = error(&r, 400);
    assert_eq!(e["error"]["param"], "max_tokens", "{e}");

    // Over --max-body.
    let big = json!({ "prompt": "hello ".repeat(1000) });
    let r = post(addr, "/v1/completions", &big);
    let e = error(&r, 413);
    assert_eq!(e["error"]["code"], "request_too_large", "{e}");

    // Unknown routes, another model.
    let r = get(addr, "/v1/nothing-here");
    let e = error(&r, 404);
    assert_eq!(e["error"]["code"], "unknown_url", "{e}");
    let r = post(addr, "/v2/completions", &json!({"prompt": "hello"}));
    error(&r, 404);
    let r = post(
        addr,
        "/v1/completions",
        &json!({"prompt": "hello", "model": "other/model"}),
    );
    let e = error(&r, 404);
    assert_eq!(e["error"]["code"], "model_not_found", "{e}");

    // A streamed request refused before it starts is a plain error object.
    let r = post(
        addr,
        "/v1/completions",
        &json!({"prompt": "hello", "max_tokens": 0, "stream": true}),
    );
    error(&r, 400);

    let health = get(addr, "/health");
    assert_eq!(health.status, 200, "{}", health.text());
    let _ = model;
}

/// `--max-concurrent 1` over loopback: a client that sends each request the
/// moment it has read the previous answer to its end is never answered 429,
/// streamed or whole, completions or chat.
#[test]
fn a_sequential_client_is_never_answered_429_at_max_concurrent_1() {
    let (_root, mut server, _model) = serve_tiny(64, &["--max-concurrent", "1"]);
    let addr = server.addr;
    for i in 0..50 {
        let stream = i % 2 == 0;
        let (path, body) = if i % 4 < 2 {
            (
                "/v1/completions",
                json!({"prompt": "hello", "max_tokens": 2, "stream": stream}),
            )
        } else {
            (
                "/v1/chat/completions",
                json!({"messages": [{"role": "user", "content": "hello"}],
                       "max_tokens": 2, "stream": stream}),
            )
        };
        let r = post(addr, path, &body);
        assert_eq!(
            r.status,
            200,
            "request {i} ({path}, stream {stream}) right after the previous answer: {}",
            r.text()
        );
        if stream {
            chunks(&r);
        }
    }
    let metrics = get(addr, "/metrics").text();
    assert!(!metrics.contains("status=\"429\""), "{metrics}");
    let (code, stderr) = server.terminate();
    assert_eq!(code, Some(0), "{stderr}");
}

/// `--model hf://ORG/NAME/FILE.gguf`: one GGUF file of a repository in the
/// hub cache (laid out here as `huggingface_hub` writes it), served under
/// its exact reference; a blob whose SHA-256 is not the one its name
/// promises is refused at start (exit 1), before anything listens.
#[test]
fn a_gguf_file_of_a_cached_repository_is_served_by_name() {
    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
    let root = tempfile::tempdir().unwrap();
    let bytes = text_model::gguf_bytes(63);
    let sha: String = ring::digest::digest(&ring::digest::SHA256, &bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let repo = root.path().join("hub/models--org--tiny-GGUF");
    let snapshot = repo.join("snapshots").join(COMMIT);
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
    std::fs::write(repo.join("blobs").join(&sha), &bytes).unwrap();
    std::os::unix::fs::symlink(
        format!("../../blobs/{sha}"),
        snapshot.join("tiny-chat.Q4_1.gguf"),
    )
    .unwrap();
    let bin = assert_cmd::cargo::cargo_bin("vram-serve");
    let hub = |args: &[&str]| {
        let mut c = std::process::Command::new(&bin);
        c.env("HF_HUB_CACHE", root.path().join("hub"))
            .env_remove("HF_HOME")
            .args(["--device", "mock", "--listen", "127.0.0.1:0"])
            .args(args);
        c
    };

    let mut server = support::spawn(hub(&["--model", "hf://org/tiny-GGUF/tiny-chat.Q4_1.gguf"]));
    let addr = server.addr;
    let exact = format!("hf://org/tiny-GGUF@{COMMIT}/tiny-chat.Q4_1.gguf");
    let models = get(addr, "/v1/models").json();
    assert_eq!(models["data"][0]["id"], exact.as_str(), "{models}");
    for name in [exact.as_str(), "hf://org/tiny-GGUF/tiny-chat.Q4_1.gguf"] {
        let a = completion(
            addr,
            &json!({"model": name, "prompt": "hello", "max_tokens": 3}),
        );
        assert_eq!(a["model"], exact.as_str(), "{a}");
    }
    let r = post(
        addr,
        "/v1/completions",
        &json!({"model": "hf://org/tiny-GGUF@ffff/tiny-chat.Q4_1.gguf", "prompt": "hello"}),
    );
    assert_eq!(r.status, 404, "{}", r.text());
    let (code, stderr) = server.terminate();
    assert_eq!(code, Some(0), "{stderr}");

    // A file the repository does not have; a reference that names no file.
    for (model, want) in [
        (
            "hf://org/tiny-GGUF/tiny-chat.F16.gguf",
            "has no file tiny-chat.F16.gguf",
        ),
        (
            "hf://org/tiny-GGUF/tiny-00001-of-00002.gguf",
            "tiny-00001-of-00002.gguf is not there",
        ),
    ] {
        let out = output_within(hub(&["--model", model]), PATIENCE);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{model}: {stderr}");
        assert!(stderr.contains(want), "{model}: {stderr}");
        assert!(out.stdout.is_empty(), "it never listened");
    }

    // The blob changed behind the cache's back: refused in the sealing pass.
    let mut bad = bytes.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    std::fs::write(repo.join("blobs").join(&sha), &bad).unwrap();
    // Bounded: a server that took the blob would listen until killed.
    let out = output_within(
        hub(&["--model", "hf://org/tiny-GGUF/tiny-chat.Q4_1.gguf"]),
        PATIENCE,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("expected SHA-256"), "{stderr}");
    assert!(
        stderr.contains(&exact),
        "the refusal names the file: {stderr}"
    );
    assert!(out.stdout.is_empty(), "it never listened");
}

/// A model split by llama.cpp's `gguf-split` is served from its parts (a
/// directory holding them, or its first part, as `llama-server -m` takes
/// it), sealed as one model of one shard per part, and answers what the
/// whole file answers; a directory missing a part is refused at start,
/// naming it.
#[test]
fn a_split_model_is_served_from_its_parts() {
    let root = tempfile::tempdir().unwrap();
    let bytes = text_model::write(root.path(), "whole", 67);
    let dir = root.path().join("tiny-split");
    std::fs::create_dir(&dir).unwrap();
    let parts = support::gguf_writer::split_gguf(&bytes, 3);
    for (i, part) in parts.iter().enumerate() {
        std::fs::write(
            dir.join(support::gguf_writer::split_name("tiny", i, 3)),
            part,
        )
        .unwrap();
    }
    let greedy = json!({"prompt": "hello world", "max_tokens": 8, "temperature": 0});
    let mut whole = serve_in(root.path(), &["--model", "whole.gguf"]);
    let expected = text_of(&completion(whole.addr, &greedy));
    whole.terminate();
    for model in ["tiny-split", "tiny-split/tiny-00001-of-00003.gguf"] {
        let mut server = serve_in(root.path(), &["--model", model]);
        let addr = server.addr;
        assert_eq!(get(addr, "/health").status, 200);
        assert_eq!(text_of(&completion(addr, &greedy)), expected, "{model}");
        let metrics = get(addr, "/metrics").text();
        assert!(metrics.contains("vram_"), "{metrics}");
        let (code, stderr) = server.terminate();
        assert_eq!(code, Some(0), "{model}: {stderr}");
    }
    let refused = |model: &str| {
        let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("vram-serve"));
        command.current_dir(root.path()).args([
            "--device",
            "mock",
            "--listen",
            "127.0.0.1:0",
            "--model",
            model,
        ]);
        let out = output_within(command, PATIENCE);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{model}: {stderr}");
        assert!(out.stdout.is_empty(), "{model}: it never listened");
        stderr
    };
    // Another model's parts beside them (a repository's other
    // quantization): a part still names its own model; the directory holds
    // two models and is refused, both named.
    let other = support::gguf_writer::split_gguf(&text_model::gguf_bytes(69), 2);
    for (i, part) in other.iter().enumerate() {
        std::fs::write(
            dir.join(support::gguf_writer::split_name("other", i, 2)),
            part,
        )
        .unwrap();
    }
    let mut server = serve_in(
        root.path(),
        &["--model", "tiny-split/tiny-00002-of-00003.gguf"],
    );
    assert_eq!(text_of(&completion(server.addr, &greedy)), expected);
    server.terminate();
    let stderr = refused("tiny-split");
    assert!(stderr.contains("holds 2 GGUF models"), "{stderr}");
    // A part missing: refused before anything listens, the part named.
    std::fs::remove_file(dir.join("tiny-00002-of-00003.gguf")).unwrap();
    for model in [
        "tiny-split/tiny-00001-of-00003.gguf",
        "tiny-split/tiny-00003-of-00003.gguf",
    ] {
        let stderr = refused(model);
        assert!(
            stderr.contains("part tiny-00002-of-00003.gguf is missing"),
            "{stderr}"
        );
    }
}

/// A split model in the hub cache, beside a file of another quantization:
/// served by naming one of its parts, each part's blob checked against the
/// SHA-256 its name promises while it is sealed.
#[test]
fn a_split_model_of_a_cached_repository_is_served_by_a_part_s_name() {
    const COMMIT: &str = "89abcdef0123456789abcdef0123456789abcdef";
    let root = tempfile::tempdir().unwrap();
    let whole = text_model::gguf_bytes(71);
    let repo = root.path().join("hub/models--org--split-GGUF");
    let snapshot = repo.join("snapshots").join(COMMIT);
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
    let mut blobs = Vec::new();
    let parts = support::gguf_writer::split_gguf(&whole, 2);
    let named: Vec<(String, &Vec<u8>)> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| (support::gguf_writer::split_name("tiny", i, 2), p))
        .chain(std::iter::once(("tiny.F32.gguf".to_owned(), &whole)))
        .collect();
    for (name, bytes) in &named {
        let sha: String = ring::digest::digest(&ring::digest::SHA256, bytes)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        std::fs::write(repo.join("blobs").join(&sha), bytes).unwrap();
        std::os::unix::fs::symlink(format!("../../blobs/{sha}"), snapshot.join(name)).unwrap();
        blobs.push(sha);
    }
    let bin = assert_cmd::cargo::cargo_bin("vram-serve");
    let hub = |model: &str| {
        let mut c = std::process::Command::new(&bin);
        c.env("HF_HUB_CACHE", root.path().join("hub"))
            .env_remove("HF_HOME")
            .args([
                "--device",
                "mock",
                "--listen",
                "127.0.0.1:0",
                "--model",
                model,
            ]);
        c
    };
    let greedy = json!({"prompt": "hello world", "max_tokens": 6, "temperature": 0});
    let mut server = support::spawn(hub("hf://org/split-GGUF/tiny.F32.gguf"));
    let expected = text_of(&completion(server.addr, &greedy));
    server.terminate();
    let mut server = support::spawn(hub("hf://org/split-GGUF/tiny-00001-of-00002.gguf"));
    let exact = format!("hf://org/split-GGUF@{COMMIT}/tiny-00001-of-00002.gguf");
    let models = get(server.addr, "/v1/models").json();
    assert_eq!(models["data"][0]["id"], exact.as_str(), "{models}");
    assert_eq!(text_of(&completion(server.addr, &greedy)), expected);
    let (code, stderr) = server.terminate();
    assert_eq!(code, Some(0), "{stderr}");

    // The second part's blob changed behind the cache's back: refused in
    // the sealing pass (exit 1), the part named.
    let blob = repo.join("blobs").join(&blobs[1]);
    let mut bad = std::fs::read(&blob).unwrap();
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    std::fs::write(&blob, &bad).unwrap();
    let out = output_within(
        hub("hf://org/split-GGUF/tiny-00001-of-00002.gguf"),
        PATIENCE,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("tiny-00002-of-00002.gguf"), "{stderr}");
    assert!(out.stdout.is_empty(), "it never listened");
}
