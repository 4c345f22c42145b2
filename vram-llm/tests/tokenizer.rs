//! The tokenizer built from GGUF metadata, on a tiny vocabulary the test
//! writes: merges, special tokens, BOS as the metadata says, the
//! end-of-generation set, and refusals of metadata it cannot use.

#![allow(clippy::panic)]

mod scripted;

use candle_core::quantized::gguf_file::Value;
use scripted::*;
use vram_llm::{GgufTokenizer, LlmError};

#[test]
fn merges_apply_and_special_tokens_in_the_text_become_their_ids() {
    let t = GgufTokenizer::from_gguf_metadata(&metadata()).unwrap();
    assert_eq!(t.vocab_size(), tokens().len());
    assert_eq!(
        t.encode("hello world").unwrap(),
        vec![token_id("hello"), token_id("Ġworld")]
    );
    assert_eq!(
        t.encode("<|im_start|>user\nhe<|im_end|>").unwrap(),
        vec![
            IM_START,
            byte_token(b'u'),
            byte_token(b's'),
            byte_token(b'e'),
            byte_token(b'r'),
            byte_token(b'\n'),
            token_id("he"),
            IM_END
        ]
    );
    // smollm: every digit on its own (no digit merges would apply anyway,
    // but " 12" must not become one pre-token with the space).
    assert_eq!(
        t.encode("a 12").unwrap(),
        vec![
            byte_token(b'a'),
            byte_token(b' '),
            byte_token(b'1'),
            byte_token(b'2')
        ]
    );
    // Multi-byte characters become their bytes' tokens and decode back.
    let ids = t.encode("é😀").unwrap();
    assert_eq!(ids, "é😀".bytes().map(byte_token).collect::<Vec<_>>());
    assert_eq!(t.decode(&ids), "é😀");
    // Control tokens add no text.
    assert_eq!(t.decode(&[IM_START, token_id("hello"), IM_END]), "hello");
}

#[test]
fn bos_is_added_exactly_when_the_metadata_says_so() {
    let t = GgufTokenizer::from_gguf_metadata(&metadata()).unwrap();
    assert!(!t.adds_bos());
    assert_eq!(t.encode_prompt("he").unwrap(), vec![token_id("he")]);
    let mut md = metadata();
    md.insert("tokenizer.ggml.add_bos_token".into(), Value::Bool(true));
    let t = GgufTokenizer::from_gguf_metadata(&md).unwrap();
    assert_eq!(
        t.encode_prompt("he").unwrap(),
        vec![IM_START, token_id("he")]
    );
    assert_eq!(t.bos_text(), Some("<|im_start|>"));
    assert_eq!(t.eos_text(), Some("<|im_end|>"));
}

#[test]
fn end_of_generation_holds_eos_eot_and_the_end_of_turn_tokens_llama_cpp_knows() {
    let t = GgufTokenizer::from_gguf_metadata(&metadata()).unwrap();
    // EOS (2) and <|endoftext|> (0, by its text).
    assert_eq!(t.end_of_generation(), &[ENDOFTEXT, IM_END]);
    let mut md = metadata();
    md.insert(
        "tokenizer.ggml.eot_token_id".into(),
        Value::U32(token_id("he")),
    );
    let t = GgufTokenizer::from_gguf_metadata(&md).unwrap();
    assert_eq!(t.end_of_generation(), &[ENDOFTEXT, IM_END, token_id("he")]);
    assert!(t.is_end_of_generation(token_id("he")));
    assert!(!t.is_end_of_generation(IM_START));
}

fn refused(md: &std::collections::HashMap<String, Value>) -> String {
    match GgufTokenizer::from_gguf_metadata(md) {
        Err(LlmError::Metadata(m)) => m,
        other => panic!("expected a metadata error, got {other:?}"),
    }
}

#[test]
fn metadata_it_cannot_use_is_refused_with_the_key_named() {
    let mut md = metadata();
    md.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(1_000_000));
    let m = refused(&md);
    assert!(
        m.contains("tokenizer.ggml.eos_token_id") && m.contains("1000000"),
        "{m}"
    );

    let mut md = metadata();
    md.insert(
        "tokenizer.ggml.pre".into(),
        Value::String("not-a-pre-tokenizer".into()),
    );
    assert!(refused(&md).contains("tokenizer.ggml.pre"));

    let mut md = metadata();
    md.insert("tokenizer.ggml.model".into(), Value::String("bert".into()));
    assert!(refused(&md).contains("tokenizer.ggml.model"));

    let mut md = metadata();
    md.remove("tokenizer.ggml.merges");
    assert!(refused(&md).contains("tokenizer.ggml.merges"));

    let mut md = metadata();
    md.insert(
        "tokenizer.ggml.merges".into(),
        Value::Array(vec![Value::String("nospace".into())]),
    );
    assert!(refused(&md).contains("tokenizer.ggml.merges"));

    let mut md = metadata();
    md.insert(
        "tokenizer.ggml.token_type".into(),
        Value::Array(vec![Value::I32(1)]),
    );
    assert!(refused(&md).contains("tokenizer.ggml.token_type"));

    let mut md = metadata();
    md.insert("tokenizer.ggml.tokens".into(), Value::U32(3));
    assert!(refused(&md).contains("tokenizer.ggml.tokens"));

    let mut md = metadata();
    md.insert(
        "tokenizer.ggml.add_bos_token".into(),
        Value::String("yes".into()),
    );
    assert!(refused(&md).contains("tokenizer.ggml.add_bos_token"));
}

#[test]
fn the_pre_tokenizer_named_in_the_metadata_decides_how_digits_group() {
    // The vocabulary has a "12" token; whether "12" may form depends on
    // the pre-tokenizer: smollm and qwen2 split every digit, llama-bpe keeps
    // up to three together, GPT-2's regex keeps a run of digits.
    let encode = |pre: &str| {
        let mut md = metadata();
        md.insert("tokenizer.ggml.pre".into(), Value::String(pre.into()));
        let t = GgufTokenizer::from_gguf_metadata(&md).unwrap();
        assert_eq!(
            t.encode("hello world").unwrap(),
            vec![token_id("hello"), token_id("Ġworld")],
            "{pre}"
        );
        t.encode("a12").unwrap()
    };
    let split = vec![byte_token(b'a'), byte_token(b'1'), byte_token(b'2')];
    let grouped = vec![byte_token(b'a'), token_id("12")];
    assert_eq!(encode("smollm"), split);
    assert_eq!(encode("qwen2"), split);
    assert_eq!(encode("llama-bpe"), grouped);
    assert_eq!(encode("gpt2"), grouped);
}

/// A SentencePiece (`llama`) vocabulary: `<unk>`, `<s>`, `</s>`, the 256
/// byte tokens, then pieces scored best-first.
fn sentencepiece_metadata() -> std::collections::HashMap<String, Value> {
    let pieces = [
        "▁", "h", "e", "l", "o", "w", "r", "d", "▁h", "he", "ll", "▁he", "llo", "▁hello", "▁w",
        "or", "▁wor", "ld", "▁world", "▁▁",
    ];
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    tokens.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
    tokens.extend(pieces.iter().map(|p| (*p).to_owned()));
    let mut types = vec![Value::I32(2), Value::I32(3), Value::I32(3)];
    types.extend(std::iter::repeat_n(Value::I32(6), 256));
    types.extend(std::iter::repeat_n(Value::I32(1), pieces.len()));
    let mut scores = vec![Value::F32(0.0); 259];
    scores.extend((0..pieces.len()).map(|i| Value::F32(-(i as f32))));
    let mut md = std::collections::HashMap::new();
    md.insert("tokenizer.ggml.model".into(), Value::String("llama".into()));
    md.insert(
        "tokenizer.ggml.tokens".into(),
        Value::Array(tokens.into_iter().map(Value::String).collect()),
    );
    md.insert("tokenizer.ggml.token_type".into(), Value::Array(types));
    md.insert("tokenizer.ggml.scores".into(), Value::Array(scores));
    md.insert("tokenizer.ggml.bos_token_id".into(), Value::U32(1));
    md.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(2));
    md.insert("tokenizer.ggml.unknown_token_id".into(), Value::U32(0));
    md
}

#[test]
fn a_sentencepiece_vocabulary_tokenizes_as_transformers_converts_it() {
    let t = GgufTokenizer::from_gguf_metadata(&sentencepiece_metadata()).unwrap();
    // Expected ids: Transformers 5.25.0's GGUF converter
    // (`convert_gguf_tokenizer("llama", ...)`) on the same vocabulary,
    // `encode(text, add_special_tokens=False)`.
    let cases: &[(&str, &[u32])] = &[
        ("hello world", &[272, 277]),
        ("hello  world", &[272, 259, 277]),
        ("hé wold\n", &[267, 198, 172, 273, 263, 276, 13]),
        ("world hello</s>", &[277, 272, 2]),
        (" hello", &[272]),
    ];
    for (text, ids) in cases {
        assert_eq!(t.encode(text).unwrap(), *ids, "{text:?}");
    }
    // BOS by default for SentencePiece, unless the metadata says no.
    assert_eq!(t.encode_prompt("hello").unwrap(), vec![1, 272]);
    let mut md = sentencepiece_metadata();
    md.insert("tokenizer.ggml.add_bos_token".into(), Value::Bool(false));
    let t2 = GgufTokenizer::from_gguf_metadata(&md).unwrap();
    assert_eq!(t2.encode_prompt("hello").unwrap(), vec![272]);
    // Generated text: pieces with their spaces, byte tokens as bytes.
    assert_eq!(t.decode(&[272, 277]), " hello world");
    assert_eq!(t.decode(&[267, 198, 172, 13]), " hé\n");
    assert_eq!(t.end_of_generation(), &[2]);

    let mut md = sentencepiece_metadata();
    md.remove("tokenizer.ggml.scores");
    assert!(refused(&md).contains("tokenizer.ggml.scores"));
}
