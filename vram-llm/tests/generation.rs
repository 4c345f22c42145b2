//! The generation loop over a scripted model: streamed deltas, the reasons
//! to stop (end-of-generation tokens, stop strings across token boundaries,
//! max_tokens, the context, a cancelling callback), multi-byte characters
//! split across tokens, prompts too long, seeds, and the outcome's figures.

#![allow(clippy::unwrap_used)]

mod scripted;

use std::ops::ControlFlow;
use std::sync::Arc;

use scripted::*;
use vram_llm::{
    ChatMessage, FinishReason, GenerateOutcome, GenerateRequest, Generator, LlmError, Prompt,
    SamplingParams, TextGeneration, TokenDelta,
};

fn generator(model: ScriptedModel) -> (Generator, Arc<ScriptedModel>) {
    let model = Arc::new(model);
    let g = Generator::from_gguf_metadata("tiny", model.clone(), &metadata()).unwrap();
    (g, model)
}

fn request(prompt: &str, max_tokens: u32, stop: &[&str]) -> GenerateRequest {
    GenerateRequest {
        prompt: Prompt::Text(prompt.into()),
        max_tokens,
        sampling: SamplingParams::default(),
        stop: stop.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn run(g: &Generator, r: &GenerateRequest) -> (GenerateOutcome, Vec<TokenDelta>) {
    let mut deltas = Vec::new();
    let out = g
        .generate(r, &mut |d| {
            deltas.push(d.clone());
            ControlFlow::Continue(())
        })
        .unwrap();
    (out, deltas)
}

fn texts(deltas: &[TokenDelta]) -> Vec<&str> {
    deltas.iter().map(|d| d.text.as_str()).collect()
}

#[test]
fn greedy_generation_streams_each_token_and_stops_at_end_of_generation() {
    let mut script = vec![token_id("hello"), token_id("Ġworld")];
    script.push(IM_END);
    let (g, model) = generator(ScriptedModel::new(script));
    let (out, deltas) = run(&g, &request("hello", 10, &[]));
    assert_eq!(out.text, "hello world");
    assert_eq!(texts(&deltas), vec!["hello", " world"]);
    assert_eq!(deltas[1].token_id, token_id("Ġworld"));
    assert_eq!(out.finish_reason, FinishReason::Stop);
    assert_eq!(out.prompt_tokens, 1);
    assert_eq!(out.completion_tokens, 2);
    assert_eq!(out.lease_verification, model.lease);
    assert!(out.time_to_first_token.unwrap() <= out.total);
    // Prefill of the prompt at 0, then each generated token at its position.
    assert_eq!(
        *model.feed.lock().unwrap(),
        vec![
            (vec![token_id("hello")], 0),
            (vec![token_id("hello")], 1),
            (vec![token_id("Ġworld")], 2)
        ]
    );
    assert_eq!(*model.starts.lock().unwrap(), 1, "one lease per request");
    // <|endoftext|> also ends generation (llama.cpp's end-of-generation set).
    let (g, _) = generator(ScriptedModel::new(vec![token_id("he"), ENDOFTEXT]));
    let (out, _) = run(&g, &request("x", 10, &[]));
    assert_eq!(
        (out.text.as_str(), out.finish_reason),
        ("he", FinishReason::Stop)
    );
}

#[test]
fn a_character_split_across_tokens_is_sent_whole() {
    let mut script = bytes_of("né😀");
    script.push(IM_END);
    let (g, _) = generator(ScriptedModel::new(script));
    let (out, deltas) = run(&g, &request("x", 10, &[]));
    assert_eq!(texts(&deltas), vec!["n", "", "é", "", "", "", "😀"]);
    assert_eq!(out.text, "né😀");
    assert_eq!(out.completion_tokens, 7);
}

#[test]
fn a_stop_string_across_token_boundaries_ends_the_text_before_it() {
    // "hello wor|ld" with stop "o wo": "hell" is sent, "o" held, then the
    // stop completes inside " world".
    let (g, _) = generator(ScriptedModel::new(vec![
        token_id("hello"),
        token_id("Ġworld"),
        IM_END,
    ]));
    let (out, deltas) = run(&g, &request("x", 10, &["o wo"]));
    assert_eq!(texts(&deltas), vec!["hell", ""]);
    assert_eq!(out.text, "hell");
    assert_eq!(out.finish_reason, FinishReason::Stop);
    assert_eq!(out.completion_tokens, 2);
    // Held text that turns out not to be a stop string is sent later.
    let (g, _) = generator(ScriptedModel::new(vec![
        token_id("hello"),
        token_id("Ġworld"),
        IM_END,
    ]));
    let (out, deltas) = run(&g, &request("x", 10, &["o!"]));
    assert_eq!(texts(&deltas), vec!["hell", "o world"]);
    assert_eq!(out.text, "hello world");
    // And held text is flushed with the end-of-generation token.
    let (g, _) = generator(ScriptedModel::new(vec![token_id("hello"), IM_END]));
    let (out, deltas) = run(&g, &request("x", 10, &["o!"]));
    assert_eq!(texts(&deltas), vec!["hell", "o"]);
    assert_eq!(deltas[1].token_id, IM_END);
    assert_eq!((out.text.as_str(), out.completion_tokens), ("hello", 1));
}

#[test]
fn max_tokens_and_the_context_end_generation_with_length() {
    let (g, _) = generator(ScriptedModel::new(vec![]));
    let (out, deltas) = run(&g, &request("x", 3, &["xx!"]));
    assert_eq!(out.text, "xxx", "held text is flushed at the last token");
    assert_eq!(texts(&deltas), vec!["", "", "xxx"]);
    assert_eq!(
        (out.finish_reason, out.completion_tokens),
        (FinishReason::Length, 3)
    );

    let mut m = ScriptedModel::new(vec![]);
    m.context = 5;
    let (g, model) = generator(m);
    let (out, _) = run(&g, &request("ab", 100, &[]));
    // 2 prompt tokens + 3 generated = the context of 5.
    assert_eq!(
        (out.finish_reason, out.completion_tokens),
        (FinishReason::Length, 3)
    );
    let last = model.feed.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.1, 3, "the last token fed sits at position 3 of 0..5");
}

#[test]
fn a_prompt_that_leaves_no_room_is_refused_before_any_lease() {
    let mut m = ScriptedModel::new(vec![]);
    m.context = 4;
    let (g, model) = generator(m);
    for prompt in ["abcd", "abcdefgh"] {
        match g.generate(&request(prompt, 5, &[]), &mut |_| ControlFlow::Continue(())) {
            Err(LlmError::PromptTooLong { tokens, context }) => {
                assert_eq!((tokens as usize, context), (prompt.len(), 4));
            }
            other => panic!("expected PromptTooLong, got {other:?}"),
        }
    }
    assert_eq!(*model.starts.lock().unwrap(), 0);
    // Three tokens leave room for one.
    let (out, _) = run(&g, &request("abc", 5, &[]));
    assert_eq!(out.completion_tokens, 1);
}

#[test]
fn a_callback_that_breaks_cancels_the_request() {
    let (g, model) = generator(ScriptedModel::new(vec![]));
    let mut seen = 0;
    let out = g
        .generate(&request("x", 50, &[]), &mut |_| {
            seen += 1;
            if seen == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!(out.finish_reason, FinishReason::Cancelled);
    assert_eq!(out.completion_tokens, 2);
    assert_eq!(out.text, "xx");
    assert_eq!(
        model.feed.lock().unwrap().len(),
        2,
        "no token computed after the break"
    );
}

#[test]
fn the_same_seed_gives_the_same_text_and_another_seed_another() {
    let sample = |seed| {
        let mut m = ScriptedModel::new(vec![]);
        m.flat = true;
        let (g, _) = generator(m);
        let mut r = request("x", 24, &[]);
        r.sampling = SamplingParams {
            temperature: 0.8,
            top_p: Some(0.9),
            seed,
        };
        run(&g, &r).0.text
    };
    let a = sample(11);
    assert_eq!(a.len(), 24);
    assert!(a.bytes().all(|b| b.is_ascii_lowercase()), "{a}");
    assert_eq!(a, sample(11));
    assert_ne!(a, sample(12));
}

#[test]
fn a_chat_prompt_is_rendered_with_the_template_and_tokenized_with_special_tokens() {
    let (g, model) = generator(ScriptedModel::new(vec![token_id("he"), IM_END]));
    let r = GenerateRequest {
        prompt: Prompt::Chat(vec![ChatMessage {
            role: "user".into(),
            content: "hello".into(),
        }]),
        ..request("", 5, &[])
    };
    let (out, _) = run(&g, &r);
    assert_eq!(out.text, "he");
    let mut expected = vec![IM_START];
    expected.extend(bytes_of("user\n"));
    expected.extend([token_id("hello"), IM_END, byte_token(b'\n'), IM_START]);
    expected.extend(bytes_of("assistant\n"));
    assert_eq!(model.feed.lock().unwrap()[0], (expected.clone(), 0));
    assert_eq!(out.prompt_tokens as usize, expected.len());
}

#[test]
fn invalid_requests_are_refused_as_usage_errors() {
    let (g, model) = generator(ScriptedModel::new(vec![]));
    let mut bad = vec![request("x", 0, &[]), request("", 5, &[])];
    let mut r = request("x", 5, &[]);
    r.sampling.temperature = -1.0;
    bad.push(r);
    let mut r = request("x", 5, &[]);
    r.sampling = SamplingParams {
        temperature: 1.0,
        top_p: Some(2.0),
        seed: 0,
    };
    bad.push(r);
    for r in &bad {
        let e = g
            .generate(r, &mut |_| ControlFlow::Continue(()))
            .unwrap_err();
        assert!(matches!(e, LlmError::InvalidRequest(_)), "{e:?}");
        assert_eq!(e.class(), vram_llm::ErrorClass::Usage);
    }
    assert_eq!(*model.starts.lock().unwrap(), 0);
}

#[test]
fn a_break_on_the_last_delta_still_reports_why_generation_ended() {
    let (g, _) = generator(ScriptedModel::new(vec![]));
    let out = g
        .generate(&request("x", 2, &[]), &mut |_| ControlFlow::Break(()))
        .unwrap();
    // The first delta's Break cancels; with max_tokens 1 it is the last one.
    assert_eq!(out.finish_reason, FinishReason::Cancelled);
    let out = g
        .generate(&request("x", 1, &[]), &mut |_| ControlFlow::Break(()))
        .unwrap();
    assert_eq!(
        (out.finish_reason, out.completion_tokens),
        (FinishReason::Length, 1)
    );
}

#[test]
fn a_model_that_cannot_start_ends_the_request_with_its_error_and_no_delta() {
    let mut m = ScriptedModel::new(vec![]);
    m.refuse = true;
    let (g, model) = generator(m);
    let mut deltas = 0;
    let e = g
        .generate(&request("x", 5, &[]), &mut |_| {
            deltas += 1;
            ControlFlow::Continue(())
        })
        .unwrap_err();
    assert!(matches!(e, LlmError::Compute(_)), "{e:?}");
    assert_eq!(deltas, 0);
    assert_eq!(*model.starts.lock().unwrap(), 1);
    assert!(model.feed.lock().unwrap().is_empty());
}

#[test]
fn a_tokenizer_larger_than_the_model_vocabulary_is_refused() {
    let mut m = ScriptedModel::new(vec![]);
    m.vocab = 10;
    let e = Generator::from_gguf_metadata("tiny", Arc::new(m), &metadata()).unwrap_err();
    assert!(
        matches!(e, LlmError::Metadata(ref s) if s.contains("logits")),
        "{e:?}"
    );
}

#[test]
fn a_chat_prompt_without_a_template_is_a_template_error() {
    let mut md = metadata();
    md.remove("tokenizer.chat_template");
    let g =
        Generator::from_gguf_metadata("tiny", Arc::new(ScriptedModel::new(vec![])), &md).unwrap();
    let r = GenerateRequest {
        prompt: Prompt::Chat(vec![ChatMessage {
            role: "user".into(),
            content: "hi".into(),
        }]),
        ..request("", 5, &[])
    };
    let e = g
        .generate(&r, &mut |_| ControlFlow::Continue(()))
        .unwrap_err();
    assert!(matches!(e, LlmError::Template(_)), "{e:?}");
}
