//! The HTTP server: the router (routes, request counting, 404 and 405 in
//! the API's shape, health, models, metrics) and the serve loop that stops
//! on a signal or when the sealed model is found compromised.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::metrics::HeldModel;
use crate::state::{Engines, Limits, Shared};
use crate::{ApiError, ServeError};

/// How long a stopping server waits for requests in flight to be answered
/// before it exits regardless.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long a client may take to send a request head (slow clients hold a
/// connection, not the server).
const HEAD_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head (request line and headers) read; hyper answers
/// a larger one 431.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Connections open at once; one more is closed at once.
const MAX_CONNECTIONS: usize = 1024;

/// Why a server stopped serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// SIGINT or SIGTERM (or the caller's shutdown future): exit 0.
    Signal,
    /// A lease was refused: the sealed weights are compromised (the
    /// message names the tensor): exit 1.
    Compromised(String),
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
        Ok(Self {
            shared: Arc::new(Shared::new(model_id.into(), engines, held, limits)?),
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
    /// flight get 10 seconds (`SHUTDOWN_GRACE`) to finish.
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
        tokio::pin!(stopping);
        let router = self.router();
        // Tells every connection to finish its request in flight and close.
        let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                () = &mut stopping => break,
                accepted = listener.accept() => {
                    let stream = match accepted {
                        Ok((stream, _)) => stream,
                        Err(e) => {
                            // Out of file descriptors, say: wait rather than spin.
                            tracing::debug!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    while connections.try_join_next().is_some() {}
                    if connections.len() >= MAX_CONNECTIONS {
                        tracing::warn!(limit = MAX_CONNECTIONS, "connection refused: too many open");
                        continue;
                    }
                    connections.spawn(connection(stream, router.clone(), closing_rx.clone()));
                }
            }
        }
        drop(listener);
        closing_tx.send_replace(true);
        let drained = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_GRACE, drained).await.is_err() {
            tracing::warn!(
                seconds = SHUTDOWN_GRACE.as_secs(),
                "requests still in flight after the grace period; stopping anyway"
            );
            connections.abort_all();
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

/// Serves one connection (HTTP/1.1, keep-alive) until the client closes it
/// or the server stops: its request head must arrive within
/// [`HEAD_READ_TIMEOUT`] and fit in [`MAX_HEAD_BYTES`].
async fn connection(
    stream: tokio::net::TcpStream,
    router: Router,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        tower::ServiceExt::oneshot(router.clone(), request.map(Body::new))
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_header_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let closing = async move {
        let _ = closing.wait_for(|c| *c).await;
    };
    tokio::select! {
        served = conn.as_mut() => {
            if let Err(e) = served {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        () = closing => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
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
