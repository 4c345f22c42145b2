//! Errors as the OpenAI API answers them:
//! `{"error": {"message", "type", "param", "code"}}` with an HTTP status.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// One error answer. Messages never hold keys, addresses or raw request
/// bytes (untrusted text in them is escaped and cut short).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for a person.
    pub message: String,
    /// The API's error type (`invalid_request_error`, `server_error`, ...).
    pub kind: &'static str,
    /// The request field at fault, when one is.
    pub param: Option<&'static str>,
    /// A stable code scripts branch on (`context_length_exceeded`, ...).
    pub code: Option<&'static str>,
    /// Seconds after which to retry (a `Retry-After` header).
    pub retry_after: Option<u32>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after: None,
        }
    }

    /// 400: the request is malformed or out of range.
    #[must_use]
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 400 naming the field at fault.
    #[must_use]
    pub fn invalid_param(param: &'static str, message: impl Into<String>) -> Self {
        Self {
            param: Some(param),
            ..Self::invalid(message)
        }
    }

    /// 404: no such route or model.
    #[must_use]
    pub fn not_found(message: impl Into<String>, code: &'static str) -> Self {
        Self {
            code: Some(code),
            ..Self::new(StatusCode::NOT_FOUND, "invalid_request_error", message)
        }
    }

    /// 413: the body is over `--max-body`.
    #[must_use]
    pub fn too_large(limit: usize) -> Self {
        Self {
            code: Some("request_too_large"),
            ..Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                format!(
                    "the request body is over this server's limit of {limit} bytes (--max-body)"
                ),
            )
        }
    }

    /// 429: every request slot is taken; retry after a second.
    #[must_use]
    pub fn busy(limit: usize) -> Self {
        Self {
            code: Some("rate_limit_exceeded"),
            retry_after: Some(1),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                format!("this server is computing {limit} requests already (--max-concurrent); retry shortly"),
            )
        }
    }

    /// 408/504: the request took longer than `--request-timeout`.
    #[must_use]
    pub fn timed_out(status: StatusCode, seconds: u64) -> Self {
        Self {
            code: Some("timeout"),
            ..Self::new(
                status,
                "timeout_error",
                format!("the request took longer than this server's limit of {seconds} s (--request-timeout)"),
            )
        }
    }

    /// 503: the sealed weights failed verification; this worker serves no
    /// more requests and is exiting for its supervisor to seal again.
    #[must_use]
    pub fn compromised(message: impl Into<String>) -> Self {
        Self {
            code: Some("model_compromised"),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
        }
    }

    /// 500: the server failed.
    #[must_use]
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// The JSON body, also what a stream carries as its last event.
    #[must_use]
    pub fn body(&self) -> String {
        let body = Body {
            error: Inner {
                message: &self.message,
                kind: self.kind,
                param: self.param,
                code: self.code,
            },
        };
        serde_json::to_string(&body).unwrap_or_else(|_| {
            String::from(
                r#"{"error":{"message":"error","type":"server_error","param":null,"code":null}}"#,
            )
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            self.body(),
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
