//! The JSON-lines protocol: one request `{"text": "..."}` (optionally with an
//! `"id"`, a string or a number, echoed in the response) per input line, one
//! response line per request: `{"embedding": [...]}` (with `"truncated":
//! true` and the `"tokens"` embedded when the text was cut to the model's
//! length) or `{"error": {"code", "class", "message"}}` (the `vram` CLI's
//! error shape).

use std::io::{BufRead, Read, Write};

use serde::Serialize;

use crate::{EmbedError, Embedder, LeaseCost, SafetensorsFile, TensorSource};

/// Longest request line accepted, in bytes (a longer one is answered with an
/// error and skipped; its text would be truncated to a few hundred tokens
/// anyway).
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// Where each request's weights come from: a fresh [`TensorSource`] per
/// request, dropped when the request is answered.
///
/// Today: [`SafetensorsFile`] hands out itself. With sealed models, a
/// provider over the manager acquires a verified lease per request (its
/// policy chosen on the command line), and a refused lease is an error that
/// ends serving.
pub trait WeightsProvider {
    /// Acquires the weights for the next request, runs `f` (the request)
    /// on them, and drops them when `f` returns: nothing `f` is given
    /// outlives it.
    ///
    /// # Errors
    ///
    /// Whatever keeps the weights from being used (for a lease: a failed
    /// verification naming the tensor); serving stops.
    fn with_weights<R>(
        &self,
        f: impl FnOnce(&(dyn TensorSource + Sync)) -> R,
    ) -> Result<R, EmbedError>;
}

impl WeightsProvider for SafetensorsFile {
    fn with_weights<R>(
        &self,
        f: impl FnOnce(&(dyn TensorSource + Sync)) -> R,
    ) -> Result<R, EmbedError> {
        Ok(f(self))
    }
}

#[derive(Serialize)]
struct EmbeddingLine<'a> {
    /// The request's `id`, when it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a serde_json::Value>,
    embedding: &'a [f32],
    /// Present (`true`) only when the text was cut to the model's length.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
    /// The tokens embedded, `[CLS]` and `[SEP]` included: given with
    /// `truncated`.
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens: Option<usize>,
    /// What the request's lease verified (absent for unverified weights).
    #[serde(skip_serializing_if = "Option::is_none")]
    lease: Option<&'a LeaseCost>,
}

/// One request: a JSON object with a string `text` and, optionally, an
/// `id` (a string or a number) echoed in its response. Anything else (an
/// array, another field) is refused.
struct Request {
    text: String,
    id: Option<serde_json::Value>,
}

impl Request {
    fn parse(line: &[u8]) -> Result<Self, EmbedError> {
        let refuse = |detail: &dyn std::fmt::Display| {
            EmbedError::Request {
            reason: format!(
                "expected {{\"text\": \"...\"}}, with an optional \"id\" (a string or a number): {detail}"
            ),
        }
        };
        let value: serde_json::Value = serde_json::from_slice(line).map_err(|e| refuse(&e))?;
        let serde_json::Value::Object(mut fields) = value else {
            return Err(refuse(&"not a JSON object"));
        };
        let id = fields.remove("id");
        if id
            .as_ref()
            .is_some_and(|id| !(id.is_string() || id.is_number()))
        {
            return Err(refuse(&"`id` is neither a string nor a number"));
        }
        let text = match fields.remove("text") {
            Some(serde_json::Value::String(text)) => text,
            Some(_) => return Err(refuse(&"`text` is not a string")),
            None => return Err(refuse(&"missing field `text`")),
        };
        if let Some(name) = fields.keys().next() {
            let name = crate::error::shown(name);
            return Err(refuse(&format_args!("unknown field `{name}`")));
        }
        Ok(Self { text, id })
    }
}

/// What one request computed.
struct Answer {
    vector: Vec<f32>,
    lease: Option<LeaseCost>,
    tokens: usize,
    truncated: bool,
}

/// What a [`serve`] run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServeSummary {
    /// Requests answered with an embedding.
    pub served: u64,
    /// Requests answered with an error.
    pub refused: u64,
}

/// Why [`serve`] stopped before the end of its input.
#[derive(Debug)]
pub struct ServeStopped {
    /// The error; unless it is [`EmbedError::Output`], its response line
    /// has been written.
    pub error: EmbedError,
    /// What was done before.
    pub summary: ServeSummary,
}

/// Answers each request line of `input` on `output` until the input ends.
/// Blank lines are skipped. A malformed request gets an error line and
/// serving goes on; an error of the weights (see
/// [`EmbedError::is_weights_error`]) or of the provider gets an error line
/// and ends serving: no later request is computed on those weights. Each
/// request's weights are acquired after its line is parsed and dropped
/// before its response is written.
///
/// # Errors
///
/// [`ServeStopped`] for a weights or provider error, or when reading the
/// input or writing a response fails.
pub fn serve<P: WeightsProvider + ?Sized>(
    embedder: &Embedder,
    weights: &P,
    mut input: impl BufRead,
    mut output: impl Write,
) -> Result<ServeSummary, ServeStopped> {
    let mut summary = ServeSummary::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        let limit = u64::try_from(MAX_REQUEST_BYTES)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let read = Read::take(&mut input, limit).read_until(b'\n', &mut line);
        let stop = |error, summary| Err(ServeStopped { error, summary });
        match read {
            Ok(0) => return Ok(summary),
            Ok(_) => {}
            Err(e) => {
                let error = EmbedError::Io {
                    path: "standard input".to_owned(),
                    kind: e.kind(),
                };
                return stop(error, summary);
            }
        }
        let mut id = None;
        let outcome = if line.len() > MAX_REQUEST_BYTES && line.last() != Some(&b'\n') {
            if let Err(e) = skip_line(&mut input) {
                let error = EmbedError::Io {
                    path: "standard input".to_owned(),
                    kind: e.kind(),
                };
                return stop(error, summary);
            }
            Err(Refusal {
                error: EmbedError::Request {
                    reason: format!("longer than {MAX_REQUEST_BYTES} bytes"),
                },
                fatal: false,
            })
        } else if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        } else {
            match Request::parse(&line) {
                Ok(request) => {
                    id = request.id;
                    answer(embedder, weights, &request.text)
                }
                Err(error) => Err(Refusal {
                    error,
                    fatal: false,
                }),
            }
        };
        // Through a struct, so each f32 is written as the shortest text
        // that reads back as the same f32 (not widened to f64 first).
        let response = match &outcome {
            Ok(answer) => serde_json::to_string(&EmbeddingLine {
                id: id.as_ref(),
                embedding: &answer.vector,
                truncated: answer.truncated,
                tokens: answer.truncated.then_some(answer.tokens),
                lease: answer.lease.as_ref(),
            }),
            Err(r) => {
                let mut line = serde_json::json!({ "error": r.error.to_json() });
                if let (Some(id), Some(object)) = (id.as_ref(), line.as_object_mut()) {
                    object.insert("id".to_owned(), id.clone());
                }
                Ok(line.to_string())
            }
        };
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                let error = EmbedError::Output {
                    kind: e.io_error_kind().unwrap_or(std::io::ErrorKind::InvalidData),
                };
                return stop(error, summary);
            }
        };
        if let Err(e) = writeln!(output, "{response}").and_then(|()| output.flush()) {
            return stop(EmbedError::Output { kind: e.kind() }, summary);
        }
        match outcome {
            Ok(_) => summary.served = summary.served.saturating_add(1),
            Err(Refusal { error, fatal }) => {
                summary.refused = summary.refused.saturating_add(1);
                if fatal {
                    tracing::error!(%error, "serving stops: the weights cannot be used");
                    return stop(error, summary);
                }
                tracing::warn!(%error, "request refused");
            }
        }
    }
}

/// A request answered with an error; `fatal` when serving must stop (the
/// weights could not be acquired or are not what the model needs).
struct Refusal {
    error: EmbedError,
    fatal: bool,
}

/// One parsed request: acquire weights, embed.
fn answer<P: WeightsProvider + ?Sized>(
    embedder: &Embedder,
    weights: &P,
    text: &str,
) -> Result<Answer, Refusal> {
    let (lease, embedding) = weights
        .with_weights(|source| (source.lease_cost(), embedder.embed(source, text)))
        .map_err(|error| Refusal { error, fatal: true })?;
    let embedding = embedding.map_err(|error| Refusal {
        fatal: error.is_weights_error(),
        error,
    })?;
    let t = embedding.timings;
    tracing::debug!(
        tokens = embedding.tokens,
        tokenize_us = t.tokenize.as_micros(),
        materialise_us = t.materialise.as_micros(),
        forward_us = t.forward.as_micros(),
        tensors = t.tensors,
        bytes = t.bytes,
        verify_us = lease.as_ref().map(|l| l.verify_us),
        "request served"
    );
    if embedding.truncated {
        tracing::info!(
            tokens = embedding.tokens,
            "request text truncated to the model's length"
        );
    }
    Ok(Answer {
        vector: embedding.vector,
        lease,
        tokens: embedding.tokens,
        truncated: embedding.truncated,
    })
}

/// Discards input up to and including the next newline.
fn skip_line(input: &mut impl BufRead) -> std::io::Result<()> {
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        if let Some(i) = buf.iter().position(|b| *b == b'\n') {
            input.consume(i.saturating_add(1));
            return Ok(());
        }
        let n = buf.len();
        input.consume(n);
    }
}
