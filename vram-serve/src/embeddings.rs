//! `POST /v1/embeddings`: sentence embeddings computed on a verified lease
//! obtained for the request (one lease for all of its inputs).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde::Deserialize;
use vram_embed::{EmbedError, ErrorClass, LeaseCost, WeightsProvider};

use crate::state::{check_user, parse_json, EmbeddingEngine, Shared};
use crate::ApiError;

/// Most inputs one request may carry.
pub const MAX_INPUTS: usize = 256;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmbeddingsRequest {
    model: Option<String>,
    input: serde_json::Value,
    encoding_format: Option<String>,
    dimensions: Option<u64>,
    /// An end-user id, accepted as the API allows and not used.
    user: Option<String>,
}

/// The inputs as texts: a string or a list of strings (token arrays are
/// refused: the tokenizer is the model's).
fn texts(input: serde_json::Value) -> Result<Vec<String>, ApiError> {
    let bad = || {
        ApiError::invalid_param(
            "input",
            "`input` must be a non-empty string or a list of 1 to 256 non-empty strings",
        )
    };
    let texts = match input {
        serde_json::Value::String(s) => vec![s],
        serde_json::Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) => Ok(s),
                _ => Err(bad()),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(bad()),
    };
    if texts.is_empty() || texts.len() > MAX_INPUTS || texts.iter().any(String::is_empty) {
        return Err(bad());
    }
    Ok(texts)
}

/// What one request computed.
struct Computed {
    vectors: Vec<Vec<f32>>,
    tokens: usize,
    lease: Option<LeaseCost>,
}

pub(crate) async fn embeddings(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    match answer(&shared, request).await {
        Ok(r) | Err(r) => r,
    }
}

async fn answer(shared: &Arc<Shared>, request: Request) -> Result<Response, Response> {
    let err = IntoResponse::into_response;
    shared.refuse_if_compromised().map_err(err)?;
    let Some(engine) = shared.engines.embeddings.clone() else {
        return Err(ApiError::not_found(
            format!(
                "model `{}` is a text generation model: it has no embeddings",
                shared.model_id
            ),
            "model_not_supported",
        )
        .into_response());
    };
    let permit = shared.permit().map_err(err)?;
    let body = shared.body(request).await.map_err(err)?;
    let parsed: EmbeddingsRequest = parse_json(&body).map_err(err)?;
    shared.check_model(parsed.model.as_deref()).map_err(err)?;
    check_user(parsed.user.as_deref()).map_err(err)?;
    let base64 = match parsed.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => {
            return Err(ApiError::invalid_param(
                "encoding_format",
                "`encoding_format` must be `float` or `base64`",
            )
            .into_response())
        }
    };
    let dimensions = engine.embedder.dimensions();
    if parsed
        .dimensions
        .is_some_and(|d| usize::try_from(d).ok() != Some(dimensions))
    {
        return Err(ApiError::invalid_param(
            "dimensions",
            format!("this model's embeddings have {dimensions} dimensions and cannot be shortened"),
        )
        .into_response());
    }
    let texts = texts(parsed.input).map_err(err)?;
    let work = tokio::task::spawn_blocking(move || {
        let computed = compute(&engine, &texts);
        // Released when the compute ends, before the task's result (and so
        // the answer) can exist: a sequential client never meets its own
        // previous request's slot.
        drop(permit);
        computed
    });
    let timeout = shared.limits.request_timeout;
    let computed = match tokio::time::timeout(timeout, work).await {
        Err(_) => {
            return Err(
                ApiError::timed_out(StatusCode::GATEWAY_TIMEOUT, timeout.as_secs()).into_response(),
            )
        }
        Ok(Err(_)) => return Err(ApiError::internal("the embedding task failed").into_response()),
        Ok(Ok(Err(e))) => return Err(refusal(shared, &e).into_response()),
        Ok(Ok(Ok(c))) => c,
    };
    if let Some(lease) = &computed.lease {
        shared
            .metrics
            .lease_verification(Duration::from_micros(lease.verify_us));
    }
    let data: Vec<serde_json::Value> = computed
        .vectors
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                serde_json::json!(v)
            };
            serde_json::json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    Ok(Json(serde_json::json!({
        "object": "list",
        "data": data,
        "model": shared.model_id,
        "usage": { "prompt_tokens": computed.tokens, "total_tokens": computed.tokens },
    }))
    .into_response())
}

/// Every input embedded on one lease, with one build of the model.
fn compute(engine: &EmbeddingEngine, texts: &[String]) -> Result<Computed, EmbedError> {
    let (lease, vectors) = engine.weights.with_weights(|source| {
        let vectors = engine.embedder.embed_all(source, texts);
        (source.lease_cost(), vectors)
    })?;
    let embeddings = vectors?;
    let tokens = embeddings
        .iter()
        .fold(0usize, |n, e| n.saturating_add(e.tokens));
    Ok(Computed {
        vectors: embeddings.into_iter().map(|e| e.vector).collect(),
        tokens,
        lease,
    })
}

/// The answer to a failed embedding: a refused lease or broken weights
/// compromise the worker (503, then exit 1); a bad text is 400; the rest 500.
fn refusal(shared: &Shared, e: &EmbedError) -> ApiError {
    if e.is_weights_error() && e.class() == ErrorClass::Integrity {
        let reason = e.to_string();
        shared.compromise(&reason);
        return ApiError::compromised(format!(
            "the sealed weights failed verification; this worker stops serving: {reason}"
        ));
    }
    match e.class() {
        ErrorClass::Usage => ApiError::invalid_param("input", e.to_string()),
        _ => ApiError::internal(e.to_string()),
    }
}
