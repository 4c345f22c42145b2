//! What the handlers share: the engines, the limits every request is
//! checked against, the counters, and the one-way "compromised" state.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use vram_embed::{Embedder, SealedWeights};
use vram_llm::TextGeneration;

use crate::metrics::{HeldModel, ServeMetrics};
use crate::{ApiError, ServeError};

/// The limits every request is checked against.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, in bytes (a larger one is answered 413).
    pub max_body: usize,
    /// Longest time from the request's arrival to its last byte computed
    /// (reading the body, verifying the lease, computing).
    pub request_timeout: Duration,
    /// Requests computing at once; one more is answered 429 with
    /// `Retry-After`.
    pub max_concurrent: usize,
    /// How long a worker whose model was found compromised goes on
    /// answering (503 to everything, `/health` included, so a load balancer
    /// takes it out of rotation) before it stops.
    pub compromised_drain: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body: 1024 * 1024,
            request_timeout: Duration::from_secs(60),
            max_concurrent: 4,
            compromised_drain: Duration::from_secs(2),
        }
    }
}

/// The sentence embedder over a sealed snapshot: each request computes on
/// a verified lease obtained for it.
#[derive(Debug, Clone)]
pub struct EmbeddingEngine {
    /// The snapshot's tokenizer, config and pooling.
    pub embedder: Arc<Embedder>,
    /// The sealed weights and the lease policy.
    pub weights: Arc<SealedWeights>,
}

/// What a server computes with: an embedder, a text generator, or both.
#[derive(Clone, Default)]
pub struct Engines {
    /// Behind `POST /v1/embeddings`.
    pub embeddings: Option<EmbeddingEngine>,
    /// Behind `POST /v1/completions` and `POST /v1/chat/completions`.
    pub text: Option<Arc<dyn TextGeneration>>,
}

impl std::fmt::Debug for Engines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engines")
            .field("embeddings", &self.embeddings.is_some())
            .field("text", &self.text.as_ref().map(|t| t.model_id().to_owned()))
            .finish()
    }
}

/// What every handler shares: the engines, the limits, the counters, and
/// whether the model was found compromised.
pub(crate) struct Shared {
    pub(crate) model_id: String,
    pub(crate) limits: Limits,
    pub(crate) engines: Engines,
    pub(crate) held: Option<HeldModel>,
    pub(crate) metrics: ServeMetrics,
    permits: Arc<Semaphore>,
    compromised: Mutex<Option<String>>,
    is_compromised: AtomicBool,
    pub(crate) stop: tokio::sync::watch::Sender<bool>,
    next_id: AtomicU64,
}

impl Shared {
    /// The state of a server for `model_id`.
    ///
    /// # Errors
    /// [`ServeError::Usage`] for a limit of zero;
    /// [`ServeError::Environment`] when the metrics cannot be defined.
    pub(crate) fn new(
        model_id: String,
        engines: Engines,
        held: Option<HeldModel>,
        limits: Limits,
    ) -> Result<Self, ServeError> {
        if limits.max_concurrent == 0 || limits.max_body == 0 || limits.request_timeout.is_zero() {
            return Err(ServeError::Usage(
                "--max-concurrent, --max-body and --request-timeout must be at least 1".into(),
            ));
        }
        let metrics = ServeMetrics::new().map_err(ServeError::Environment)?;
        let (stop, _) = tokio::sync::watch::channel(false);
        Ok(Self {
            model_id,
            permits: Arc::new(Semaphore::new(limits.max_concurrent)),
            limits,
            engines,
            held,
            metrics,
            compromised: Mutex::new(None),
            is_compromised: AtomicBool::new(false),
            stop,
            next_id: AtomicU64::new(0),
        })
    }
}

impl Shared {
    pub(crate) fn compromised_reason(&self) -> Option<String> {
        if !self.is_compromised.load(Ordering::SeqCst) {
            return None;
        }
        self.compromised
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Marks the model compromised (once: the first reason stays), turns
    /// `/health` to 503 and asks the server to stop after answering.
    pub(crate) fn compromise(&self, reason: &str) {
        {
            let mut slot = self
                .compromised
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if slot.is_none() {
                tracing::error!(reason, "sealed weights compromised: serving stops");
                *slot = Some(reason.to_owned());
            }
        }
        self.is_compromised.store(true, Ordering::SeqCst);
        self.stop.send_replace(true);
    }

    /// The answer for every request once the model is compromised.
    pub(crate) fn refuse_if_compromised(&self) -> Result<(), ApiError> {
        match self.compromised_reason() {
            Some(reason) => Err(ApiError::compromised(format!(
                "the sealed model failed verification and this worker serves no more requests: {reason}"
            ))),
            None => Ok(()),
        }
    }

    /// A request slot, or 429 at once (no wait: a full server says so).
    ///
    /// The slot is held by the blocking task that computes the answer and
    /// dropped there when the computation ends, before its result is handed
    /// to the response: the answer's last byte is written only after the
    /// release, so a sequential client never finds its own previous request
    /// still holding the slot. (Held until the task's end, the release raced
    /// the client's next request, which could be answered 429 at
    /// `--max-concurrent 1`.) A request refused before it computes (bad
    /// body, unknown model) drops its slot with its handler.
    pub(crate) fn permit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        Arc::clone(&self.permits)
            .try_acquire_owned()
            .map_err(|_| ApiError::busy(self.limits.max_concurrent))
    }

    /// The request's body, at most `max_body` bytes (413), read within the
    /// request timeout (408).
    pub(crate) async fn body(&self, request: Request) -> Result<Bytes, ApiError> {
        let limit = self.limits.max_body;
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX)) {
            return Err(ApiError::too_large(limit));
        }
        let read = axum::body::to_bytes(request.into_body(), limit);
        match tokio::time::timeout(self.limits.request_timeout, read).await {
            Err(_) => Err(ApiError::timed_out(
                StatusCode::REQUEST_TIMEOUT,
                self.limits.request_timeout.as_secs(),
            )),
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(e)) => {
                let over = std::error::Error::source(&e)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                    || e.to_string().contains("length limit");
                if over {
                    Err(ApiError::too_large(limit))
                } else {
                    Err(ApiError::invalid("the request body could not be read"))
                }
            }
        }
    }

    /// A fresh response id (`PREFIX-N`).
    pub(crate) fn response_id(&self, prefix: &str) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}-{:x}{n:06x}", unix_seconds())
    }

    /// 404 unless `model` is absent, the served model's id, or (for a hub
    /// model) its id without the `@COMMIT`.
    pub(crate) fn check_model(&self, model: Option<&str>) -> Result<(), ApiError> {
        // `hf://ORG/NAME` names the served `hf://ORG/NAME@COMMIT` too, and
        // `hf://ORG/NAME/FILE.gguf` the served `hf://ORG/NAME@COMMIT/FILE.gguf`.
        let without_commit = self
            .model_id
            .strip_prefix("hf://")
            .and_then(|rest| rest.split_once('@'))
            .map(|(repo, at)| {
                let file = at.find('/').map_or("", |i| at.get(i..).unwrap_or(""));
                format!("hf://{repo}{file}")
            });
        let served = |m: &str| {
            m == self.model_id
                || self
                    .model_id
                    .strip_prefix(m)
                    .is_some_and(|rest| m.starts_with("hf://") && rest.starts_with('@'))
                || without_commit.as_deref() == Some(m)
        };
        match model {
            Some(m) if !served(m) => Err(ApiError::not_found(
                format!(
                    "model `{}` is not served here; this worker serves `{}`",
                    crate::shown(m),
                    self.model_id
                ),
                "model_not_found",
            )),
            _ => Ok(()),
        }
    }
}

/// Seconds since the Unix epoch (OpenAI's `created`).
pub(crate) fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A request body as JSON: 400 with serde's message (escaped) otherwise.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid(format!(
            "invalid request body: {}",
            crate::shown(&e.to_string())
        ))
    })
}

/// The API's `user` field: an end-user id, accepted and not used.
pub(crate) fn check_user(user: Option<&str>) -> Result<(), ApiError> {
    if user.is_some_and(|u| u.chars().count() > 256) {
        return Err(ApiError::invalid_param(
            "user",
            "`user` is longer than 256 characters",
        ));
    }
    Ok(())
}
