//! `POST /v1/completions` and `POST /v1/chat/completions`: text generated
//! by the [`TextGeneration`] engine on a blocking thread, answered whole or
//! streamed as server-sent events; generation stops when the client goes
//! away or the request's time is up.

use std::convert::Infallible;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::stream::{self, StreamExt as _};
use serde::Deserialize;
use tokio::sync::mpsc;
use vram_llm::{
    ChatMessage, ErrorClass, FinishReason, GenerateOutcome, GenerateRequest, LlmError, Prompt,
    SamplingParams, TextGeneration, TokenDelta,
};

use crate::state::{check_user, parse_json, unix_seconds, Shared};
use crate::ApiError;

/// Most stop strings a request may give (as the OpenAI API).
const MAX_STOP: usize = 4;
/// Generated pieces buffered for a slow stream reader before generation
/// waits for it.
const STREAM_BUFFER: usize = 64;
/// Default `max_tokens` of `/v1/completions` (as the OpenAI API).
const DEFAULT_COMPLETION_TOKENS: u32 = 16;

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamOptions {
    include_usage: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompletionRequest {
    model: Option<String>,
    prompt: serde_json::Value,
    max_tokens: Option<u32>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    seed: Option<u64>,
    stop: Option<Stop>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    n: Option<u32>,
    user: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContentPart {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageIn {
    role: String,
    content: Content,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatRequest {
    model: Option<String>,
    messages: Vec<MessageIn>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    seed: Option<u64>,
    stop: Option<Stop>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    n: Option<u32>,
    user: Option<String>,
}

/// Which API shape a request and its answer have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Completions,
    Chat,
}

/// The fields both APIs share, checked.
struct Common {
    max_tokens: Option<u32>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    seed: Option<u64>,
    stop: Option<Stop>,
    n: Option<u32>,
}

/// A request ready for the engine.
struct Job {
    request: GenerateRequest,
    stream: bool,
    include_usage: bool,
}

fn generate_request(
    prompt: Prompt,
    common: Common,
    default_max: u32,
    context: u32,
) -> Result<GenerateRequest, ApiError> {
    if common.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid_param(
            "n",
            "`n` must be 1: one choice per request",
        ));
    }
    let max_tokens = common.max_tokens.unwrap_or(default_max);
    if max_tokens == 0 || max_tokens > context {
        return Err(ApiError::invalid_param(
            "max_tokens",
            format!("`max_tokens` is {max_tokens}; it must be between 1 and the model's context of {context} tokens"),
        ));
    }
    let temperature = common.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid_param(
            "temperature",
            "`temperature` must be between 0 (greedy) and 2",
        ));
    }
    if common.top_p.is_some_and(|p| !(p > 0.0 && p <= 1.0)) {
        return Err(ApiError::invalid_param(
            "top_p",
            "`top_p` must be greater than 0 and at most 1",
        ));
    }
    let stop = match common.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s],
        Some(Stop::Many(v)) => v,
    };
    if stop.len() > MAX_STOP || stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid_param(
            "stop",
            "`stop` must be a non-empty string or a list of up to 4 non-empty strings",
        ));
    }
    // Without a seed, each request samples differently (as the API does).
    let seed = common.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::from(d.subsec_nanos()) ^ d.as_secs())
    });
    Ok(GenerateRequest {
        prompt,
        max_tokens,
        sampling: SamplingParams {
            temperature,
            top_p: common.top_p,
            seed,
        },
        stop,
    })
}

fn completion_job(body: &[u8], shared: &Shared, context: u32) -> Result<Job, ApiError> {
    let r: CompletionRequest = parse_json(body)?;
    shared.check_model(r.model.as_deref())?;
    check_user(r.user.as_deref())?;
    let bad_prompt = || {
        ApiError::invalid_param(
            "prompt",
            "`prompt` must be a string (or a list of one string)",
        )
    };
    let prompt = match r.prompt {
        serde_json::Value::String(s) => s,
        serde_json::Value::Array(mut items) if items.len() == 1 => match items.pop() {
            Some(serde_json::Value::String(s)) => s,
            _ => return Err(bad_prompt()),
        },
        _ => return Err(bad_prompt()),
    };
    let common = Common {
        max_tokens: r.max_tokens,
        temperature: r.temperature,
        top_p: r.top_p,
        seed: r.seed,
        stop: r.stop,
        n: r.n,
    };
    Ok(Job {
        request: generate_request(
            Prompt::Text(prompt),
            common,
            DEFAULT_COMPLETION_TOKENS.min(context),
            context,
        )?,
        stream: r.stream.unwrap_or(false),
        include_usage: r
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
    })
}

fn chat_job(body: &[u8], shared: &Shared, context: u32) -> Result<Job, ApiError> {
    let r: ChatRequest = parse_json(body)?;
    shared.check_model(r.model.as_deref())?;
    check_user(r.user.as_deref())?;
    if r.messages.is_empty() {
        return Err(ApiError::invalid_param("messages", "`messages` is empty"));
    }
    let messages = r
        .messages
        .into_iter()
        .map(|m| {
            let content = match m.content {
                Content::Text(t) => t,
                Content::Parts(parts) => {
                    let mut text = String::new();
                    for p in parts {
                        match (p.kind.as_str(), p.text) {
                            ("text", Some(t)) => text.push_str(&t),
                            _ => {
                                return Err(ApiError::invalid_param(
                                    "messages",
                                    "only text content parts (`{\"type\": \"text\", \"text\": ...}`) are supported",
                                ))
                            }
                        }
                    }
                    text
                }
            };
            Ok(ChatMessage {
                role: m.role,
                content,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if r.max_tokens.is_some() && r.max_completion_tokens.is_some() {
        return Err(ApiError::invalid_param(
            "max_tokens",
            "give `max_tokens` or `max_completion_tokens`, not both",
        ));
    }
    let common = Common {
        max_tokens: r.max_tokens.or(r.max_completion_tokens),
        temperature: r.temperature,
        top_p: r.top_p,
        seed: r.seed,
        stop: r.stop,
        n: r.n,
    };
    Ok(Job {
        request: generate_request(Prompt::Chat(messages), common, context, context)?,
        stream: r.stream.unwrap_or(false),
        include_usage: r
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
    })
}

pub(crate) async fn completions(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    match generate(&shared, request, Api::Completions).await {
        Ok(r) | Err(r) => r,
    }
}

pub(crate) async fn chat_completions(
    State(shared): State<Arc<Shared>>,
    request: Request,
) -> Response {
    match generate(&shared, request, Api::Chat).await {
        Ok(r) | Err(r) => r,
    }
}

/// What the generating thread hands the response.
enum Frame {
    Delta(String),
    Done(Result<GenerateOutcome, LlmError>),
}

/// Longest refusal message kept, in characters.
const REFUSAL_CHARS: usize = 4096;

/// The answer to a failed generation: a refused lease compromises the
/// worker (503, then exit 1); a usage error is 400; the rest 500.
fn llm_refusal(shared: &Shared, e: &LlmError, api: Api) -> ApiError {
    let message = crate::shown(&e.to_string());
    match e.class() {
        ErrorClass::Integrity => {
            // A refusal names up to 16 tensors a corrupt leaf touches, each
            // with its byte range: room for all of them (escaped as any
            // message), so the corrupt tensor is named even when it shares
            // its leaf with the header and many small tensors.
            let message = vram_validation::escape_for_log(&e.to_string(), REFUSAL_CHARS);
            shared.compromise(&message);
            ApiError::compromised(format!(
                "the sealed weights failed verification; this worker stops serving: {message}"
            ))
        }
        ErrorClass::Usage => {
            let param = match api {
                Api::Completions => "prompt",
                Api::Chat => "messages",
            };
            match e {
                LlmError::PromptTooLong { .. } => ApiError {
                    code: Some("context_length_exceeded"),
                    ..ApiError::invalid_param(param, message)
                },
                _ => ApiError::invalid_param(param, message),
            }
        }
        _ => ApiError::internal(message),
    }
}

async fn generate(shared: &Arc<Shared>, request: Request, api: Api) -> Result<Response, Response> {
    let err = IntoResponse::into_response;
    shared.refuse_if_compromised().map_err(err)?;
    let Some(engine) = shared.engines.text.clone() else {
        return Err(ApiError::not_found(
            format!(
                "model `{}` is an embedding model: it does not generate text (use /v1/embeddings)",
                shared.model_id
            ),
            "model_not_supported",
        )
        .into_response());
    };
    let permit = shared.permit().map_err(err)?;
    let started = Instant::now();
    let body = shared.body(request).await.map_err(err)?;
    let context = engine.context_length();
    let job = match api {
        Api::Completions => completion_job(&body, shared, context),
        Api::Chat => chat_job(&body, shared, context),
    }
    .map_err(err)?;
    let timeout = shared.limits.request_timeout;
    let deadline = started.checked_add(timeout).unwrap_or(started);
    let cancel = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = mpsc::channel::<Frame>(STREAM_BUFFER);
    let stream = job.stream;
    let worker_cancel = Arc::clone(&cancel);
    let request = job.request;
    let task = tokio::task::spawn_blocking(move || {
        let mut on_token = |d: &TokenDelta| {
            // Cancelled, out of time, or the client gone (the answer's
            // receiver dropped with the request).
            if worker_cancel.load(Ordering::SeqCst) || Instant::now() >= deadline || tx.is_closed()
            {
                return ControlFlow::Break(());
            }
            if stream && !d.text.is_empty() {
                return send_until(&tx, Frame::Delta(d.text.clone()), deadline);
            }
            ControlFlow::Continue(())
        };
        let outcome = generate_caught(engine.as_ref(), &request, &mut on_token);
        // The compute is done: the slot is free before the outcome is handed
        // to the answer, so the answer's last byte (whole or streamed) is
        // written only after the release, and a client that sends its next
        // request the moment it reads that byte finds the slot free. Held
        // any longer (to the end of this task, or of the response stream),
        // the release would race that request and a sequential client could
        // be answered 429.
        drop(permit);
        let _ = send_until(&tx, Frame::Done(outcome), deadline);
    });
    drop(task);
    let left = deadline.saturating_duration_since(Instant::now());
    let first = match tokio::time::timeout(left, rx.recv()).await {
        Err(_) => {
            cancel.store(true, Ordering::SeqCst);
            return Err(
                ApiError::timed_out(StatusCode::GATEWAY_TIMEOUT, timeout.as_secs()).into_response(),
            );
        }
        Ok(None) => {
            return Err(
                ApiError::internal("the generation task ended without an answer").into_response(),
            )
        }
        Ok(Some(Frame::Done(Err(e)))) => return Err(llm_refusal(shared, &e, api).into_response()),
        Ok(Some(first)) => first,
    };
    let id = shared.response_id(match api {
        Api::Completions => "cmpl",
        Api::Chat => "chatcmpl",
    });
    let head = Head {
        id,
        created: unix_seconds(),
        model: shared.model_id.clone(),
        api,
    };
    if !stream {
        let Frame::Done(Ok(outcome)) = first else {
            return Err(
                ApiError::internal("the generation task streamed to a whole answer")
                    .into_response(),
            );
        };
        if outcome.finish_reason == FinishReason::Cancelled {
            return Err(
                ApiError::timed_out(StatusCode::GATEWAY_TIMEOUT, timeout.as_secs()).into_response(),
            );
        }
        record(shared, &outcome);
        return Ok(Json(head.whole(&outcome)).into_response());
    }
    let state = StreamState {
        shared: Arc::clone(shared),
        head,
        rx,
        first: Some(first),
        started: false,
        ended: false,
        include_usage: job.include_usage,
        timeout,
        _cancel_on_drop: CancelOnDrop(cancel),
    };
    let events = stream::unfold(state, |mut s| async move {
        let events = s.next_events().await?;
        Some((
            stream::iter(events.into_iter().map(Ok::<Event, Infallible>)),
            s,
        ))
    })
    .flatten();
    Ok(Sse::new(events).into_response())
}

/// Runs the engine, turning a panic in it into an error answer rather than
/// a lost request.
fn generate_caught(
    engine: &dyn TextGeneration,
    request: &GenerateRequest,
    on_token: &mut dyn FnMut(&TokenDelta) -> ControlFlow<()>,
) -> Result<GenerateOutcome, LlmError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        engine.generate(request, on_token)
    }))
    .unwrap_or_else(|_| Err(LlmError::Compute("the engine panicked".into())))
}

/// Sends `frame`, waiting for a slow reader until `deadline`: `Break` when
/// the reader is gone (the client disconnected) or the time is up.
fn send_until(tx: &mpsc::Sender<Frame>, mut frame: Frame, deadline: Instant) -> ControlFlow<()> {
    loop {
        match tx.try_send(frame) {
            Ok(()) => return ControlFlow::Continue(()),
            Err(mpsc::error::TrySendError::Closed(_)) => return ControlFlow::Break(()),
            Err(mpsc::error::TrySendError::Full(back)) => {
                if Instant::now() >= deadline {
                    return ControlFlow::Break(());
                }
                frame = back;
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

fn record(shared: &Shared, outcome: &GenerateOutcome) {
    shared.metrics.tokens(u64::from(outcome.completion_tokens));
    if let Some(t) = outcome.time_to_first_token {
        shared.metrics.time_to_first_token(t);
    }
    shared
        .metrics
        .lease_verification(outcome.lease_verification);
}

/// Sets the cancel flag when the response stream is dropped (the client
/// went away), so generation stops at its next token.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// What every answer and chunk of one request repeats.
struct Head {
    id: String,
    created: u64,
    model: String,
    api: Api,
}

fn usage(o: &GenerateOutcome) -> serde_json::Value {
    serde_json::json!({
        "prompt_tokens": o.prompt_tokens,
        "completion_tokens": o.completion_tokens,
        "total_tokens": o.prompt_tokens.saturating_add(o.completion_tokens),
    })
}

impl Head {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.api, chunk) {
            (Api::Completions, _) => "text_completion",
            (Api::Chat, false) => "chat.completion",
            (Api::Chat, true) => "chat.completion.chunk",
        }
    }

    /// The whole answer.
    fn whole(&self, o: &GenerateOutcome) -> serde_json::Value {
        let choice = match self.api {
            Api::Completions => serde_json::json!({
                "index": 0, "text": o.text, "logprobs": null,
                "finish_reason": o.finish_reason.as_str(),
            }),
            Api::Chat => serde_json::json!({
                "index": 0,
                "message": { "role": "assistant", "content": o.text },
                "logprobs": null,
                "finish_reason": o.finish_reason.as_str(),
            }),
        };
        serde_json::json!({
            "id": self.id, "object": self.object(false), "created": self.created,
            "model": self.model, "choices": [choice], "usage": usage(o),
        })
    }

    /// One streamed chunk: `text` added, or the end with its reason.
    fn chunk(&self, delta: serde_json::Value, finish: Option<&str>) -> Event {
        let choice = match self.api {
            Api::Completions => serde_json::json!({
                "index": 0, "text": delta.get("content").cloned().unwrap_or_else(|| "".into()),
                "logprobs": null, "finish_reason": finish,
            }),
            Api::Chat => serde_json::json!({
                "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish,
            }),
        };
        let value = serde_json::json!({
            "id": self.id, "object": self.object(true), "created": self.created,
            "model": self.model, "choices": [choice],
        });
        Event::default().data(value.to_string())
    }

    fn usage_chunk(&self, o: &GenerateOutcome) -> Event {
        let value = serde_json::json!({
            "id": self.id, "object": self.object(true), "created": self.created,
            "model": self.model, "choices": [], "usage": usage(o),
        });
        Event::default().data(value.to_string())
    }
}

struct StreamState {
    shared: Arc<Shared>,
    head: Head,
    rx: mpsc::Receiver<Frame>,
    first: Option<Frame>,
    started: bool,
    ended: bool,
    include_usage: bool,
    timeout: Duration,
    _cancel_on_drop: CancelOnDrop,
}

impl StreamState {
    /// The events for the next frame; `None` once the stream has ended.
    async fn next_events(&mut self) -> Option<Vec<Event>> {
        if self.ended {
            return None;
        }
        let mut events = Vec::new();
        if !self.started {
            self.started = true;
            if self.head.api == Api::Chat {
                events.push(self.head.chunk(
                    serde_json::json!({ "role": "assistant", "content": "" }),
                    None,
                ));
            }
        }
        let frame = match self.first.take() {
            Some(f) => Some(f),
            None => self.rx.recv().await,
        };
        match frame {
            Some(Frame::Delta(text)) => {
                events.push(
                    self.head
                        .chunk(serde_json::json!({ "content": text }), None),
                );
            }
            Some(Frame::Done(Ok(outcome))) => {
                self.ended = true;
                if outcome.finish_reason == FinishReason::Cancelled {
                    // The client is still here: the time was up.
                    let e =
                        ApiError::timed_out(StatusCode::GATEWAY_TIMEOUT, self.timeout.as_secs());
                    events.push(Event::default().data(e.body()));
                    return Some(events);
                }
                record(&self.shared, &outcome);
                events.push(
                    self.head
                        .chunk(serde_json::json!({}), Some(outcome.finish_reason.as_str())),
                );
                if self.include_usage {
                    events.push(self.head.usage_chunk(&outcome));
                }
                events.push(Event::default().data("[DONE]"));
            }
            Some(Frame::Done(Err(e))) => {
                self.ended = true;
                let api = self.head.api;
                events.push(Event::default().data(llm_refusal(&self.shared, &e, api).body()));
            }
            None => {
                self.ended = true;
                let e = ApiError::internal("the generation task ended without an answer");
                events.push(Event::default().data(e.body()));
            }
        }
        Some(events)
    }
}
