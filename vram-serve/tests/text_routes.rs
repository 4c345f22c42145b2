//! The text routes' HTTP layer in-process: the router over a test engine
//! that emits fixed pieces of text (no model: the GGUF engine is another
//! crate's), for the JSON shapes OpenAI clients read, the server-sent event
//! framing, `[DONE]`, generation stopped by a client that goes away, the
//! limits, and errors mapped by their class.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

use std::ops::ControlFlow;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt as _;
use serde_json::{json, Value};
use tower::ServiceExt as _;
use vram_llm::{
    ChatMessage, FinishReason, GenerateOutcome, GenerateRequest, LlmError, Prompt, TextGeneration,
    TokenDelta,
};
use vram_residency::VramError;
use vram_serve::{Engines, Limits, Server};

const MODEL: &str = "org/fixed-model";
const CONTEXT: u32 = 4096;
const PIECES: [&str; 4] = ["Hello", ",", " world", "!"];
/// Prompt tokens the test engine reports.
const PROMPT_TOKENS: u32 = 7;

/// What the engine saw and did, per request.
#[derive(Debug, Clone)]
struct Seen {
    request: GenerateRequest,
    finish: Option<FinishReason>,
    generated: u32,
}

/// A test-only engine: emits [`PIECES`] (at most `max_tokens` of them), or
/// does what its prompt says (`FAIL:…`, `BLOCK`, `ENDLESS`).
struct Fixed {
    seen: Mutex<Vec<Seen>>,
    started: Mutex<mpsc::Sender<()>>,
    gate: Mutex<mpsc::Receiver<()>>,
}

fn prompt_text(p: &Prompt) -> String {
    match p {
        Prompt::Text(t) => t.clone(),
        Prompt::Chat(m) => m.last().map(|m| m.content.clone()).unwrap_or_default(),
    }
}

impl TextGeneration for Fixed {
    fn model_id(&self) -> &str {
        MODEL
    }

    fn context_length(&self) -> u32 {
        CONTEXT
    }

    fn generate(
        &self,
        request: &GenerateRequest,
        on_token: &mut dyn FnMut(&TokenDelta) -> ControlFlow<()>,
    ) -> Result<GenerateOutcome, LlmError> {
        let start = Instant::now();
        let prompt = prompt_text(&request.prompt);
        let mut seen = Seen {
            request: request.clone(),
            finish: None,
            generated: 0,
        };
        let result = (|| {
            match prompt.as_str() {
                "FAIL:too-long" => {
                    return Err(LlmError::PromptTooLong {
                        tokens: 5000,
                        context: CONTEXT,
                    })
                }
                "FAIL:invalid" => {
                    return Err(LlmError::InvalidRequest(
                        "`role` tool is not supported".into(),
                    ))
                }
                "FAIL:compute" => return Err(LlmError::Compute("a kernel failed".into())),
                "FAIL:integrity" => {
                    return Err(LlmError::Vram(VramError::Compromised {
                        shard_id: "blk.3.ffn_down.weight".into(),
                    }))
                }
                "PANIC" => panic!("the test engine panics on purpose"),
                "BLOCK" => {
                    self.started.lock().unwrap().send(()).unwrap();
                    self.gate
                        .lock()
                        .unwrap()
                        .recv_timeout(Duration::from_secs(60))
                        .unwrap();
                }
                _ => {}
            }
            if prompt == "SIGNAL-ENDLESS" {
                self.started.lock().unwrap().send(()).unwrap();
            }
            let endless = prompt.ends_with("ENDLESS") || prompt == "STREAM-FAIL";
            let mut text = String::new();
            let mut first = None;
            let mut finish = FinishReason::Stop;
            for i in 0..request.max_tokens {
                if !endless && i as usize >= PIECES.len() {
                    break;
                }
                if prompt == "STREAM-FAIL" && i == 2 {
                    return Err(LlmError::Vram(VramError::Compromised {
                        shard_id: "blk.0.attn_q.weight".into(),
                    }));
                }
                let piece = if endless { "x" } else { PIECES[i as usize] };
                if endless {
                    std::thread::sleep(Duration::from_millis(1));
                }
                first.get_or_insert_with(|| start.elapsed());
                seen.generated += 1;
                let delta = TokenDelta {
                    token_id: i,
                    text: piece.to_owned(),
                };
                if on_token(&delta).is_break() {
                    finish = FinishReason::Cancelled;
                    break;
                }
                text.push_str(piece);
                if seen.generated == request.max_tokens
                    && (endless || i as usize + 1 < PIECES.len())
                {
                    finish = FinishReason::Length;
                }
            }
            Ok(GenerateOutcome {
                text,
                prompt_tokens: PROMPT_TOKENS,
                completion_tokens: seen.generated,
                finish_reason: finish,
                time_to_first_token: first,
                lease_verification: Duration::from_micros(50),
                total: start.elapsed(),
            })
        })();
        seen.finish = result.as_ref().ok().map(|o| o.finish_reason);
        self.seen.lock().unwrap().push(seen);
        result
    }
}

struct Harness {
    server: Server,
    engine: Arc<Fixed>,
    started: mpsc::Receiver<()>,
    gate: mpsc::Sender<()>,
}

fn harness(limits: Limits) -> Harness {
    let (started_tx, started) = mpsc::channel();
    let (gate, gate_rx) = mpsc::channel();
    let engine = Arc::new(Fixed {
        seen: Mutex::new(Vec::new()),
        started: Mutex::new(started_tx),
        gate: Mutex::new(gate_rx),
    });
    let engines = Engines {
        embeddings: None,
        text: Some(Arc::clone(&engine) as Arc<dyn TextGeneration>),
    };
    let server = Server::new(MODEL, engines, None, limits).unwrap();
    Harness {
        server,
        engine,
        started,
        gate,
    }
}

fn post_request(path: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

async fn call(
    router: &Router,
    path: &str,
    body: &Value,
) -> (StatusCode, axum::http::HeaderMap, String) {
    call_raw(router, post_request(path, &body.to_string())).await
}

async fn call_raw(
    router: &Router,
    request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn get(router: &Router, path: &str) -> (StatusCode, String) {
    let request = Request::builder().uri(path).body(Body::empty()).unwrap();
    let (status, _, body) = call_raw(router, request).await;
    (status, body)
}

/// The `data:` payloads of an event stream, checking its framing: every
/// event is one `data: ` line followed by a blank line.
fn events(body: &str) -> Vec<String> {
    assert!(body.ends_with("\n\n"), "{body:?}");
    body.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            assert_eq!(e.lines().count(), 1, "one line per event: {e:?}");
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data line: {e:?}"))
                .to_owned()
        })
        .collect()
}

fn error_of(status: StatusCode, body: &str, want: StatusCode) -> Value {
    assert_eq!(status, want, "{body}");
    let v: Value = serde_json::from_str(body).unwrap();
    let e = v["error"].as_object().unwrap_or_else(|| panic!("{v}"));
    for field in ["message", "type", "param", "code"] {
        assert!(e.contains_key(field), "no `{field}` in {v}");
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_is_answered_whole_in_the_shape_clients_read() {
    let h = harness(Limits::default());
    let router = h.server.router();
    let (status, headers, body) = call(
        &router,
        "/v1/completions",
        &json!({"model": MODEL, "prompt": "Say hi", "max_tokens": 3, "temperature": 0}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["content-type"], "application/json");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"), "{v}");
    assert_eq!(v["object"], "text_completion");
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(v["model"], MODEL);
    assert_eq!(v["choices"].as_array().unwrap().len(), 1);
    assert_eq!(v["choices"][0]["index"], 0);
    assert_eq!(v["choices"][0]["text"], "Hello, world");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert!(v["choices"][0]["logprobs"].is_null());
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": PROMPT_TOKENS, "completion_tokens": 3, "total_tokens": PROMPT_TOKENS + 3})
    );
    let seen = h.engine.seen.lock().unwrap()[0].clone();
    assert_eq!(seen.request.prompt, Prompt::Text("Say hi".into()));
    assert_eq!(seen.request.max_tokens, 3);
    assert_eq!(seen.request.sampling.temperature, 0.0);
    assert!(seen.request.stop.is_empty());
    // Without max_tokens: the API's default of 16 (the pieces end first).
    let (status, _, body) = call(&router, "/v1/completions", &json!({"prompt": ["Say hi"]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["choices"][0]["text"], "Hello, world!");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(h.engine.seen.lock().unwrap()[1].request.max_tokens, 16);
    let (_, metrics) = get(&router, "/metrics").await;
    assert!(
        metrics.contains("vram_serve_tokens_generated_total 7"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vram_serve_time_to_first_token_seconds_count 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vram_serve_lease_verification_seconds_count 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vram_serve_requests_total{route=\"/v1/completions\",status=\"200\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_completion_passes_messages_and_sampling_and_answers_a_message() {
    let h = harness(Limits::default());
    let router = h.server.router();
    let (status, _, body) = call(
        &router,
        "/v1/chat/completions",
        &json!({
            "model": MODEL,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
            ],
            "stop": "\n", "seed": 7, "top_p": 0.9, "temperature": 0.5,
            "max_completion_tokens": 10, "n": 1, "user": "u-1",
        }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"), "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(
        v["choices"][0]["message"],
        json!({"role": "assistant", "content": "Hello, world!"})
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 4);
    let seen = h.engine.seen.lock().unwrap()[0].clone();
    assert_eq!(
        seen.request.prompt,
        Prompt::Chat(vec![
            ChatMessage {
                role: "system".into(),
                content: "Be brief.".into()
            },
            ChatMessage {
                role: "user".into(),
                content: "Hi".into()
            },
        ])
    );
    assert_eq!(seen.request.stop, vec!["\n".to_owned()]);
    assert_eq!(seen.request.sampling.seed, 7);
    assert_eq!(seen.request.sampling.top_p, Some(0.9));
    assert_eq!(seen.request.sampling.temperature, 0.5);
    assert_eq!(seen.request.max_tokens, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_completion_is_server_sent_events_ending_in_done() {
    let h = harness(Limits::default());
    let router = h.server.router();
    let (status, headers, body) = call(
        &router,
        "/v1/completions",
        &json!({"prompt": "Say hi", "stream": true, "stop": ["\n", "END"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["content-type"], "text/event-stream");
    let data = events(&body);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks.len(), PIECES.len() + 1, "{body}");
    let id = chunks[0]["id"].clone();
    let mut text = String::new();
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c["id"], id);
        assert_eq!(c["object"], "text_completion");
        assert_eq!(c["model"], MODEL);
        text.push_str(c["choices"][0]["text"].as_str().unwrap());
        let last = i + 1 == chunks.len();
        assert_eq!(c["choices"][0]["finish_reason"].is_null(), !last, "{c}");
    }
    assert_eq!(text, "Hello, world!");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
    assert_eq!(h.engine.seen.lock().unwrap()[0].request.stop, ["\n", "END"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_chat_sends_the_role_then_deltas_then_the_reason_and_usage() {
    let h = harness(Limits::default());
    let router = h.server.router();
    let (status, _, body) = call(
        &router,
        "/v1/chat/completions",
        &json!({
            "messages": [{"role": "user", "content": "Hi"}],
            "stream": true, "stream_options": {"include_usage": true}, "max_tokens": 2,
        }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let data = events(&body);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    // role, "Hello", ",", end, usage.
    assert_eq!(chunks.len(), 5, "{body}");
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert_eq!(
        chunks[1]["choices"][0]["delta"],
        json!({"content": "Hello"})
    );
    assert_eq!(chunks[2]["choices"][0]["delta"], json!({"content": ","}));
    assert_eq!(chunks[3]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[3]["choices"][0]["finish_reason"], "length");
    assert_eq!(chunks[4]["choices"], json!([]));
    assert_eq!(
        chunks[4]["usage"],
        json!({"prompt_tokens": PROMPT_TOKENS, "completion_tokens": 2, "total_tokens": PROMPT_TOKENS + 2})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_stops_when_the_client_goes_away() {
    let h = harness(Limits::default());
    let router = h.server.router();
    let request = post_request(
        "/v1/completions",
        &json!({"prompt": "ENDLESS", "stream": true, "max_tokens": CONTEXT}).to_string(),
    );
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut received = 0;
    while received < 3 {
        let frame = tokio::time::timeout(Duration::from_secs(60), body.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if frame.is_data() {
            received += 1;
        }
    }
    drop(body);
    // The engine is told to stop at its next token (bounded wait).
    let start = Instant::now();
    let seen = loop {
        if let Some(s) = h.engine.seen.lock().unwrap().first().cloned() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "generation did not stop"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(seen.finish, Some(FinishReason::Cancelled));
    assert!(seen.generated < CONTEXT, "{seen:?}");
    // Its slot is free again.
    let (status, _, body) = call(&router, "/v1/completions", &json!({"prompt": "Say hi"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_and_engine_errors_get_the_status_of_their_class() {
    let h = harness(Limits::default());
    let router = h.server.router();
    let calls = |body: Value| {
        let router = router.clone();
        async move { call(&router, "/v1/completions", &body).await }
    };
    // Checked before the engine is asked.
    for (body, param) in [
        (
            json!({"prompt": "x", "max_tokens": CONTEXT + 1}),
            "max_tokens",
        ),
        (json!({"prompt": "x", "max_tokens": 0}), "max_tokens"),
        (json!({"prompt": "x", "n": 2}), "n"),
        (json!({"prompt": "x", "temperature": 3}), "temperature"),
        (json!({"prompt": "x", "top_p": 0}), "top_p"),
        (
            json!({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}),
            "stop",
        ),
        (json!({"prompt": ["x", "y"]}), "prompt"),
        (json!({"prompt": 7}), "prompt"),
    ] {
        let (status, _, text) = calls(body.clone()).await;
        let v = error_of(status, &text, StatusCode::BAD_REQUEST);
        assert_eq!(v["error"]["param"], param, "{body}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    let (status, _, text) = calls(json!({"prompt": "x", "logprobs": 3})).await;
    let v = error_of(status, &text, StatusCode::BAD_REQUEST);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `logprobs`"),
        "{v}"
    );
    let (status, _, text) = call_raw(
        &router,
        post_request("/v1/chat/completions", "{\"messages\": ["),
    )
    .await;
    error_of(status, &text, StatusCode::BAD_REQUEST);
    let (status, _, text) = call(&router, "/v1/chat/completions", &json!({"messages": []})).await;
    error_of(status, &text, StatusCode::BAD_REQUEST);
    let (status, _, text) = calls(json!({"prompt": "x", "model": "gpt-4"})).await;
    let v = error_of(status, &text, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["code"], "model_not_found");
    let (status, _, text) = call(&router, "/v1/embeddings", &json!({"input": "x"})).await;
    error_of(status, &text, StatusCode::NOT_FOUND);
    assert!(
        h.engine.seen.lock().unwrap().is_empty(),
        "the engine was not asked"
    );

    // The engine's own errors, by class; a stream that fails before its
    // first token is an HTTP error too, not an event stream.
    for stream in [false, true] {
        let (status, headers, text) =
            calls(json!({"prompt": "FAIL:too-long", "stream": stream})).await;
        let v = error_of(status, &text, StatusCode::BAD_REQUEST);
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(v["error"]["code"], "context_length_exceeded");
        assert_eq!(v["error"]["param"], "prompt");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("5000"),
            "{v}"
        );
    }
    let (status, _, text) = calls(json!({"prompt": "FAIL:invalid"})).await;
    error_of(status, &text, StatusCode::BAD_REQUEST);
    let (status, _, text) = calls(json!({"prompt": "FAIL:compute"})).await;
    let v = error_of(status, &text, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(v["error"]["type"], "server_error");
    // A panicking engine is an error answer, and serving goes on.
    for stream in [false, true] {
        let (status, _, text) = calls(json!({"prompt": "PANIC", "stream": stream})).await;
        let v = error_of(status, &text, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            v["error"]["message"].as_str().unwrap().contains("panicked"),
            "{v}"
        );
    }
    // Still serving.
    let (status, _, text) = calls(json!({"prompt": "Say hi"})).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(get(&router, "/health").await.0, StatusCode::OK);

    // A refused lease: 503 naming the tensor, /health 503, nothing more
    // computed, and the server is told to stop.
    let (status, _, text) = calls(json!({"prompt": "FAIL:integrity"})).await;
    let v = error_of(status, &text, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["error"]["code"], "model_compromised");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("blk.3.ffn_down.weight"),
        "{v}"
    );
    let (status, body) = get(&router, "/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let asked = h.engine.seen.lock().unwrap().len();
    let (status, _, text) = calls(json!({"prompt": "Say hi"})).await;
    error_of(status, &text, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(h.engine.seen.lock().unwrap().len(), asked);
    assert!(h
        .server
        .compromised()
        .unwrap()
        .contains("blk.3.ffn_down.weight"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_lease_mid_stream_ends_the_stream_with_an_error_event() {
    let h = harness(Limits::default());
    let router = h.server.router();
    let (status, _, body) = call(
        &router,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "STREAM-FAIL"}], "stream": true}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let data = events(&body);
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "model_compromised", "{body}");
    assert!(last["error"]["message"]
        .as_str()
        .unwrap()
        .contains("blk.0.attn_q.weight"));
    assert!(!body.contains("[DONE]"), "{body}");
    assert_eq!(
        get(&router, "/health").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_answers_429_with_retry_after_and_serves_again_when_free() {
    let h = harness(Limits {
        max_concurrent: 1,
        ..Limits::default()
    });
    let router = h.server.router();
    let first = {
        let router = router.clone();
        tokio::spawn(
            async move { call(&router, "/v1/completions", &json!({"prompt": "BLOCK"})).await },
        )
    };
    let started = tokio::task::spawn_blocking(move || {
        h.started
            .recv_timeout(Duration::from_secs(60))
            .map(|()| h.started)
    });
    let started_rx = started
        .await
        .unwrap()
        .expect("the first request reached the engine");
    let (status, headers, text) =
        call(&router, "/v1/completions", &json!({"prompt": "Say hi"})).await;
    let v = error_of(status, &text, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    let (status, _, text) = call(
        &router,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    error_of(status, &text, StatusCode::TOO_MANY_REQUESTS);
    // Health and metrics are not computing requests: still answered.
    assert_eq!(get(&router, "/health").await.0, StatusCode::OK);
    h.gate.send(()).unwrap();
    let (status, _, text) = first.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{text}");
    let (status, _, text) = call(&router, "/v1/completions", &json!({"prompt": "Say hi"})).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    drop(started_rx);
    let (_, metrics) = get(&router, "/metrics").await;
    assert!(
        metrics.contains("vram_serve_requests_total{route=\"/v1/completions\",status=\"429\"} 1"),
        "{metrics}"
    );
}

/// `--max-concurrent 1` and a client that sends each request the moment it
/// has read the last byte of the previous answer: never 429, streamed or
/// whole, completions or chat (the slot is free before the last byte is
/// written). Two requests at once still get one 429 with `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequential_client_never_meets_its_own_previous_request_at_one_slot() {
    let h = harness(Limits {
        max_concurrent: 1,
        ..Limits::default()
    });
    let router = h.server.router();
    for i in 0..SEQUENTIAL_REQUESTS {
        let stream = i % 2 == 0;
        let (path, body) = if i % 4 < 2 {
            (
                "/v1/completions",
                json!({"prompt": "Say hi", "max_tokens": 3, "stream": stream}),
            )
        } else {
            (
                "/v1/chat/completions",
                json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": stream}),
            )
        };
        let (status, _, text) = call(&router, path, &body).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "request {i} ({path}, stream {stream}) right after the previous answer: {text}"
        );
        if stream {
            assert_eq!(events(&text).last().map(String::as_str), Some("[DONE]"));
        }
    }

    // Two at once: the second is refused, with the time to retry after.
    let first = {
        let router = router.clone();
        tokio::spawn(
            async move { call(&router, "/v1/completions", &json!({"prompt": "BLOCK"})).await },
        )
    };
    let started = tokio::task::spawn_blocking(move || {
        h.started
            .recv_timeout(Duration::from_secs(60))
            .map(|()| h.started)
    });
    let _started_rx = started
        .await
        .unwrap()
        .expect("the first request reached the engine");
    let (status, headers, text) = call(
        &router,
        "/v1/completions",
        &json!({"prompt": "Say hi", "stream": true}),
    )
    .await;
    let v = error_of(status, &text, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    h.gate.send(()).unwrap();
    let (status, _, text) = tokio::time::timeout(Duration::from_secs(60), first)
        .await
        .expect("the blocked request ends once released")
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{text}");
    let (status, _, text) = call(&router, "/v1/completions", &json!({"prompt": "Say hi"})).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let (_, metrics) = get(&router, "/metrics").await;
    assert!(
        metrics.contains("vram_serve_requests_total{route=\"/v1/completions\",status=\"429\"} 1"),
        "{metrics}"
    );
}

/// Requests a sequential client sends in a row.
const SEQUENTIAL_REQUESTS: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_its_time_is_answered_504_and_generation_stops() {
    let h = harness(Limits {
        request_timeout: Duration::from_secs(1),
        ..Limits::default()
    });
    let router = h.server.router();
    let (status, _, text) = call(
        &router,
        "/v1/completions",
        &json!({"prompt": "ENDLESS", "max_tokens": CONTEXT}),
    )
    .await;
    let v = error_of(status, &text, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(v["error"]["code"], "timeout");
    let start = Instant::now();
    let seen = loop {
        if let Some(s) = h.engine.seen.lock().unwrap().first().cloned() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "generation did not stop"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(seen.finish, Some(FinishReason::Cancelled));
}

/// A hub model is served as `hf://ORG/NAME@COMMIT`; requests may name it
/// without the commit, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_model_may_be_named_without_its_commit() {
    let h = harness(Limits::default());
    let engines = Engines {
        embeddings: None,
        text: Some(Arc::clone(&h.engine) as Arc<dyn TextGeneration>),
    };
    let server = Server::new("hf://org/fixed@0123abcd", engines, None, Limits::default()).unwrap();
    let router = server.router();
    for (model, status) in [
        ("hf://org/fixed@0123abcd", StatusCode::OK),
        ("hf://org/fixed", StatusCode::OK),
        ("hf://org/fixed@ffff", StatusCode::NOT_FOUND),
        ("hf://org/fix", StatusCode::NOT_FOUND),
        ("org/fixed", StatusCode::NOT_FOUND),
    ] {
        let (got, _, body) = call(
            &router,
            "/v1/completions",
            &json!({"model": model, "prompt": "x"}),
        )
        .await;
        assert_eq!(got, status, "{model}: {body}");
    }
}

/// A client waiting for a whole answer that goes away stops generation too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_answer_stops_generating_when_its_client_goes_away() {
    let h = harness(Limits::default());
    let router = h.server.router();
    let request = {
        let router = router.clone();
        tokio::spawn(async move {
            call(
                &router,
                "/v1/completions",
                &json!({"prompt": "SIGNAL-ENDLESS", "max_tokens": CONTEXT}),
            )
            .await
        })
    };
    let started = h.started;
    tokio::task::spawn_blocking(move || started.recv_timeout(Duration::from_secs(60)))
        .await
        .unwrap()
        .expect("generation started");
    request.abort();
    let start = Instant::now();
    let seen = loop {
        if let Some(s) = h.engine.seen.lock().unwrap().first().cloned() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "generation did not stop"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(seen.finish, Some(FinishReason::Cancelled));
    assert!(seen.generated < CONTEXT, "{seen:?}");
}
