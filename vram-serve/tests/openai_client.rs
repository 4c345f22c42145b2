//! The `openai` Python client, unchanged, against the servers
//! (`tests/openai_client.py`): the binary on the tests' tiny BERT snapshot
//! for embeddings, and the same HTTP layer in-process over a test-only
//! engine for the text routes. Runs when `python3 -c "import openai"` works
//! (`VRAM_SERVE_PYTHON` names another interpreter); says so loudly when not.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::print_stderr
)]

mod support;

use std::ops::ControlFlow;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::snapshot::write_snapshot;
use support::{serve_in, PATIENCE};
use vram_llm::{
    FinishReason, GenerateOutcome, GenerateRequest, LlmError, Prompt, TextGeneration, TokenDelta,
};
use vram_serve::{Engines, Limits, Server};

const TEXT_MODEL: &str = "org/fixed-model";
const PIECES: [&str; 4] = ["Hello", ",", " world", "!"];

/// A test-only engine: at most `max_tokens` of [`PIECES`]; a prompt of
/// `FAIL:too-long` is too long for its context.
struct Fixed;

impl TextGeneration for Fixed {
    fn model_id(&self) -> &str {
        TEXT_MODEL
    }

    fn context_length(&self) -> u32 {
        2048
    }

    fn generate(
        &self,
        request: &GenerateRequest,
        on_token: &mut dyn FnMut(&TokenDelta) -> ControlFlow<()>,
    ) -> Result<GenerateOutcome, LlmError> {
        let start = Instant::now();
        if request.prompt == Prompt::Text("FAIL:too-long".into()) {
            return Err(LlmError::PromptTooLong {
                tokens: 5000,
                context: 2048,
            });
        }
        let n = (request.max_tokens as usize).min(PIECES.len());
        let mut text = String::new();
        for (i, piece) in PIECES[..n].iter().enumerate() {
            let delta = TokenDelta {
                token_id: i as u32,
                text: (*piece).to_owned(),
            };
            if on_token(&delta).is_break() {
                break;
            }
            text.push_str(piece);
        }
        Ok(GenerateOutcome {
            text,
            prompt_tokens: 5,
            completion_tokens: n as u32,
            finish_reason: if n < PIECES.len() {
                FinishReason::Length
            } else {
                FinishReason::Stop
            },
            time_to_first_token: Some(start.elapsed()),
            lease_verification: Duration::from_micros(10),
            total: start.elapsed(),
        })
    }
}

fn python() -> String {
    std::env::var("VRAM_SERVE_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

fn python_has(module: &str) -> bool {
    let mut command = Command::new(python());
    command.args(["-c", &format!("import {module}")]);
    support::try_output_within(command, PATIENCE).is_ok_and(|o| o.status.success())
}

#[test]
fn the_openai_python_client_works_unchanged() {
    if !python_has("openai") {
        eprintln!(
            "\n\n*** NOT RUN: the openai Python client test needs `{} -c \"import openai\"` to work \
             (pip install openai, or set VRAM_SERVE_PYTHON to an interpreter that has it) ***\n\n",
            python()
        );
        return;
    }
    let root = tempfile::tempdir().unwrap();
    write_snapshot(&root.path().join("tiny-bert"), 51);
    let embed = serve_in(root.path(), &["--model", "tiny-bert"]);

    let server = Server::new(
        TEXT_MODEL,
        Engines {
            embeddings: None,
            text: Some(Arc::new(Fixed)),
        },
        None,
        Limits::default(),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let text_addr = listener.local_addr().unwrap();
    let serving = server.clone();
    runtime.spawn(async move { serving.serve(listener, std::future::pending()).await });

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openai_client.py");
    let mut cmd = Command::new(python());
    if python_has("pytest") {
        cmd.args(["-m", "pytest", "-q", "-p", "no:cacheprovider"]);
    } else {
        eprintln!("NOTE: pytest is not installed: running tests/openai_client.py as a script");
    }
    cmd.arg(&script)
        .env("VRAM_SERVE_EMBED_URL", format!("http://{}/v1", embed.addr))
        .env("VRAM_SERVE_EMBED_MODEL", "tiny-bert")
        .env("VRAM_SERVE_TEXT_URL", format!("http://{text_addr}/v1"))
        .env("VRAM_SERVE_TEXT_MODEL", TEXT_MODEL)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let out = support::output_within(cmd, PATIENCE * 3);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(
        out.status.success(),
        "openai client tests failed:\n{stdout}\n{stderr}"
    );
}
