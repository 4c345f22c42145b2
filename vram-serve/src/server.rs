//! The HTTP server: shared state, the router, limits (body size, request
//! time, concurrency), and the serve loop that stops on a signal or when
//! the sealed model is found compromised.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use vram_embed::{Embedder, SealedWeights};
use vram_llm::TextGeneration;

use crate::metrics::{HeldModel, ServeMetrics};
use crate::{ApiError, ServeError};

/// How long a stopping server waits for requests in flight to be answered
/// before it exits regardless.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

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

/// Why a server stopped serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// SIGINT or SIGTERM (or the caller's shutdown future): exit 0.
    Signal,
    /// A lease was refused: the sealed weights are compromised (the
    /// message names the tensor): exit 1.
    Compromised(String),
}

pub(crate) struct Shared {
    pub(crate) model_id: String,
    pub(crate) limits: Limits,
    pub(crate) engines: Engines,
    pub(crate) held: Option<HeldModel>,
    pub(crate) metrics: ServeMetrics,
    permits: Arc<Semaphore>,
    compromised: Mutex<Option<String>>,
    is_compromised: AtomicBool,
    stop: tokio::sync::watch::Sender<bool>,
    next_id: AtomicU64,
}

/// A server over its engines: build it, take its [`Server::router`] for
/// in-process use, or [`Server::serve`] it on a listener.
#[derive(Clone)]
pub struct Server {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("model_id", &self.shared.model_id)
            .field("limits", &self.shared.limits)
            .field("engines", &self.shared.engines)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server for the model `model_id` (what `/v1/models` lists and
    /// requests may name). `held` gives `/metrics` the sealed model's
    /// families and `/health` its shards.
    ///
    /// # Errors
    /// [`ServeError::Usage`] for a limit of zero;
    /// [`ServeError::Environment`] when the metrics cannot be defined.
    pub fn new(
        model_id: impl Into<String>,
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
            shared: Arc::new(Shared {
                model_id: model_id.into(),
                permits: Arc::new(Semaphore::new(limits.max_concurrent)),
                limits,
                engines,
                held,
                metrics,
                compromised: Mutex::new(None),
                is_compromised: AtomicBool::new(false),
                stop,
                next_id: AtomicU64::new(0),
            }),
        })
    }

    /// The routes, limits and error shapes, as a service.
    pub fn router(&self) -> Router {
        let shared = Arc::clone(&self.shared);
        Router::new()
            .route("/v1/embeddings", post(crate::embeddings::embeddings))
            .route("/v1/completions", post(crate::text::completions))
            .route("/v1/chat/completions", post(crate::text::chat_completions))
            .route("/v1/models", get(models))
            .route("/health", get(health))
            .route("/metrics", get(metrics))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(middleware::from_fn_with_state(Arc::clone(&shared), count))
            .with_state(shared)
    }

    /// Whether a lease was refused (the model is compromised), and why.
    #[must_use]
    pub fn compromised(&self) -> Option<String> {
        self.shared.compromised_reason()
    }

    /// Serves on `listener` until `shutdown` resolves (exit 0) or the model
    /// is found compromised (exit 1: after the request that found it is
    /// answered and [`Limits::compromised_drain`] has passed). Requests in
    /// flight get [`SHUTDOWN_GRACE`] to finish.
    ///
    /// # Errors
    /// [`ServeError::Environment`] when the listener fails.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Stopped, ServeError> {
        let mut stop = self.shared.stop.subscribe();
        let signalled = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&signalled);
        let drain = self.shared.limits.compromised_drain;
        let stopping = async move {
            let compromised = async move { stop.wait_for(|s| *s).await.is_ok() };
            let compromised = tokio::select! {
                () = shutdown => {
                    flag.store(true, Ordering::SeqCst);
                    false
                }
                c = compromised => c,
            };
            if compromised {
                tokio::time::sleep(drain).await;
            }
        };
        let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
        let graceful = async move {
            stopping.await;
            let _ = stopped_tx.send(());
        };
        let app = self
            .router()
            .into_make_service_with_connect_info::<SocketAddr>();
        let serving = axum::serve(listener, app).with_graceful_shutdown(graceful);
        let serving = async move { serving.await };
        let deadline = async move {
            if stopped_rx.await.is_ok() {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            served = serving => served.map_err(|e| ServeError::Environment(format!("serving: {e}")))?,
            () = deadline => tracing::warn!(
                seconds = SHUTDOWN_GRACE.as_secs(),
                "requests still in flight after the grace period; stopping anyway"
            ),
        }
        if let Some(reason) = self.compromised() {
            return Ok(Stopped::Compromised(reason));
        }
        if !signalled.load(Ordering::SeqCst) {
            tracing::warn!("server stopped without a signal");
        }
        Ok(Stopped::Signal)
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

    /// A request slot, or 429.
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

    /// 404 unless `model` is absent or the served model's id.
    pub(crate) fn check_model(&self, model: Option<&str>) -> Result<(), ApiError> {
        match model {
            Some(m) if m != self.model_id => Err(ApiError::not_found(
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

/// Counts every answered request by its route and status.
async fn count(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    shared.metrics.request(&route, response.status().as_u16());
    response
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(
        format!(
            "no route for {method} {}; this server answers /v1/embeddings, /v1/completions, \
             /v1/chat/completions, /v1/models, /health and /metrics",
            crate::shown(uri.path())
        ),
        "unknown_url",
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        ..ApiError::invalid(format!(
            "{method} is not allowed on {}",
            crate::shown(uri.path())
        ))
    }
}

async fn models(State(shared): State<Arc<Shared>>) -> Response {
    Json(serde_json::json!({
        "object": "list",
        "data": [{
            "id": shared.model_id,
            "object": "model",
            "created": 0,
            "owned_by": "vram-serve",
        }],
    }))
    .into_response()
}

async fn health(State(shared): State<Arc<Shared>>) -> Response {
    let shard_compromised = shared
        .held
        .as_ref()
        .is_some_and(|h| h.shards.iter().any(|s| s.is_compromised()));
    if shard_compromised && shared.compromised_reason().is_none() {
        shared.compromise("a shard of the sealed model was found compromised");
    }
    match shared.compromised_reason() {
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "compromised", "reason": reason })),
        )
            .into_response(),
        None => {
            Json(serde_json::json!({ "status": "ok", "model": shared.model_id })).into_response()
        }
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    match crate::metrics::render(shared.held.as_ref(), &shared.metrics) {
        Ok(text) => (
            [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
            Body::from(text),
        )
            .into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}
