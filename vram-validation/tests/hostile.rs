//! Hostile inputs: every one must be rejected with an error whose text is one safe line.
#![allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]

use vram_validation::{
    ModelRef, Sha256Hex, ShardId, ValidationError, MAX_MODEL_REF_LEN, MAX_SHARD_ID_LEN,
};

/// Inputs that must never be accepted as a shard id.
const HOSTILE_SHARD_IDS: &[&str] = &[
    // Empty and whitespace.
    "",
    " ",
    "  ",
    "\t",
    "\n",
    "\r\n",
    " shard",
    "shard ",
    "sha rd",
    "shard\t1",
    "\u{a0}shard",
    "shard\u{2003}1",
    "shard\u{3000}",
    // Control characters and NUL.
    "\0",
    "shard\0",
    "\0shard",
    "shard\u{1}",
    "shard\u{7}",
    "shard\u{8}",
    "shard\u{b}",
    "shard\u{c}",
    "shard\u{1b}[31m",
    "shard\u{7f}",
    "shard\u{85}",
    "shard\u{9b}",
    "a\n[INFO] seal ok",
    "a\r[INFO] seal ok",
    // Path traversal and separators.
    ".",
    "..",
    "...",
    "../etc/passwd",
    "..\\windows",
    "/etc/passwd",
    "\\\\server\\share",
    "shard/../../x",
    "shard/1",
    "shard\\1",
    "C:",
    "C:\\x",
    "shard.bin",
    ".hidden",
    "shard.",
    "%2e%2e%2f",
    "..%2f",
    "shard%00",
    "file:shard",
    // Shell and format metacharacters.
    "shard;rm -rf /",
    "shard|cat",
    "shard&",
    "$(id)",
    "`id`",
    "${HOME}",
    "shard>out",
    "shard<in",
    "shard*",
    "shard?",
    "shard[0]",
    "{shard}",
    "shard'",
    "shard\"",
    "shard!",
    "shard#1",
    "shard@host",
    "shard+1",
    "shard=1",
    "shard,1",
    "shard~",
    "shard^",
    "%s%s%n",
    "{0}{1}",
    "<script>alert(1)</script>",
    "' OR '1'='1",
    // Non-ASCII: accents, scripts, homoglyphs, emoji, invisible and bidi characters.
    "shärd",
    "café",
    "шард",
    "shаrd",   // Cyrillic a
    "ѕhard",   // Cyrillic dze
    "shard１", // full-width digit
    "ｓｈａｒｄ",
    "shard🚀",
    "👍",
    "shard\u{200b}",
    "\u{200b}",
    "shard\u{200d}x",
    "shard\u{2060}",
    "\u{feff}shard",
    "shard\u{202e}dlrow",
    "shard\u{202d}",
    "shard\u{2066}x\u{2069}",
    "shard\u{200f}",
    "shard\u{200e}",
    "shard\u{301}",
    "shard\u{fffd}",
    "shard\u{e000}",
    "shard\u{10ffff}",
    "شارد",
    "分片",
];

/// Inputs that must never be accepted as a model ref.
const HOSTILE_MODEL_REFS: &[&str] = &[
    "",
    "..",
    "../model",
    "a/../../b",
    "a/..",
    "a\\..\\b",
    "..\\model",
    "file:..",
    "file:../etc/shadow",
    "hf:org/../repo",
    "hf:org/repo@main/../../x",
    "/etc/passwd",
    "\\windows\\system32",
    "file:/etc/passwd",
    "file:\\x",
    "model\0",
    "model\n",
    "model\r\nx",
    "model\t",
    "model\u{1b}[2J",
    "model\u{7f}",
    // (UTF-8 names such as "modèle", "model🚀" and "hf:org/rеpo", with a
    // Cyrillic e, are model refs operators use: accepted since issue 18, see
    // tests/model_refs.rs. Invisible and reordering characters stay refused.)
    "model\u{202e}",
    "model\u{200b}",
    "model\u{85}",
    "model\u{9b}[2J",
    "model\u{2066}x\u{2069}",
    "model\u{2028}forged",
    "model\u{feff}",
    // Percent-encoded tricks.
    "%2e%2e/etc/passwd",
    "hf://org/%2E%2E/x",
    "hf://%2Fetc/passwd",
    "org%2F..%2Fx",
    "model%00",
    "model%0a[INFO] forged",
    "model%e2%80%ae",
    "model%zz",
    "model%",
    // Absolute paths only as file:///.
    "hf:///etc/passwd",
    "s3:///bucket",
    "file://host/etc/passwd",
    "file:///",
    "file:///srv/../etc/shadow",
];

fn assert_safe_line(text: &str) {
    assert!(
        !text.chars().any(|c| c.is_control()),
        "error text has a control char: {text:?}"
    );
    assert!(
        text.chars().all(|c| c.is_ascii() || c == '…'),
        "error text has non-ASCII: {text:?}"
    );
}

#[test]
fn hostile_input_table_is_large_enough() {
    let total = HOSTILE_SHARD_IDS.len() + HOSTILE_MODEL_REFS.len();
    assert!(HOSTILE_SHARD_IDS.len() >= 80, "{}", HOSTILE_SHARD_IDS.len());
    assert_eq!(HOSTILE_SHARD_IDS.len(), 97);
    assert_eq!(HOSTILE_MODEL_REFS.len(), 42);
    assert_eq!(total, 139);
}

#[test]
fn every_hostile_shard_id_is_rejected_safely() {
    for input in HOSTILE_SHARD_IDS {
        let err = ShardId::new(input).expect_err(input);
        assert_safe_line(&err.to_string());
        let json = serde_json::to_string(input).unwrap();
        assert!(
            serde_json::from_str::<ShardId>(&json).is_err(),
            "deserialised {input:?}"
        );
    }
}

#[test]
fn every_hostile_model_ref_is_rejected_safely() {
    for input in HOSTILE_MODEL_REFS {
        let err = ModelRef::new(input).expect_err(input);
        assert_safe_line(&err.to_string());
        let json = serde_json::to_string(input).unwrap();
        assert!(
            serde_json::from_str::<ModelRef>(&json).is_err(),
            "deserialised {input:?}"
        );
    }
}

#[test]
fn hostile_shard_ids_are_hostile_digests_too() {
    for input in HOSTILE_SHARD_IDS {
        let err = Sha256Hex::new(input).expect_err(input);
        assert_safe_line(&err.to_string());
    }
}

#[test]
fn forged_log_line_is_escaped() {
    let err = ShardId::new("ok\n2024-01-01 INFO seal verified shard=x").unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"shard id contains the forbidden character "\u{a}" at byte 2"#
    );
    let err = ModelRef::new("../\n\u{1b}[2Jforged").unwrap_err();
    assert_safe_line(&err.to_string());
    assert!(err.to_string().contains(r#""\u{a}" at byte 3"#), "{err}");
    assert!(
        err.to_string().contains(r#""../\u{a}\u{1b}[2Jforged""#),
        "the input is shown, escaped: {err}"
    );
    // A quote in the input cannot end the quoted part of the message early.
    let err = ModelRef::new(r#"a/../" is fine; also \u{a}"#).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"model ref "a/../\" is fine; also \\u{a}" contains a ".." path segment"#
    );
}

#[test]
fn shard_id_boundary_lengths() {
    assert!(matches!(
        ShardId::new(""),
        Err(ValidationError::Empty { .. })
    ));
    for len in [1, 255, MAX_SHARD_ID_LEN] {
        let s = "a".repeat(len);
        assert_eq!(ShardId::new(&s).unwrap().as_str(), s);
    }
    for len in [MAX_SHARD_ID_LEN + 1, 1 << 20] {
        let err = ShardId::new(&"a".repeat(len)).unwrap_err();
        assert_eq!(
            err,
            ValidationError::TooLong {
                field: vram_validation::Field::ShardId,
                len,
                max: MAX_SHARD_ID_LEN
            }
        );
        assert!(err.to_string().len() < 100, "{err}");
    }
    // Multi-byte characters count in bytes, not characters.
    assert!(ShardId::new(&"é".repeat(129)).is_err());
}

#[test]
fn model_ref_boundary_lengths() {
    assert!(ModelRef::new("").is_err());
    for len in [1, 255, 256, 257, MAX_MODEL_REF_LEN - 1, MAX_MODEL_REF_LEN] {
        let s = "m".repeat(len);
        assert_eq!(ModelRef::new(&s).unwrap().as_str(), s);
    }
    for len in [MAX_MODEL_REF_LEN + 1, 1 << 20] {
        assert!(matches!(
            ModelRef::new(&"m".repeat(len)),
            Err(ValidationError::TooLong { len: l, .. }) if l == len
        ));
    }
}

#[test]
fn sha256_boundary_lengths() {
    for len in [0, 1, 63, 65, 128, 1 << 20] {
        assert!(Sha256Hex::new(&"a".repeat(len)).is_err(), "{len}");
    }
    assert!(Sha256Hex::new(&"a".repeat(64)).is_ok());
}

#[test]
fn good_model_refs_are_accepted() {
    for s in [
        "hf:meta-llama/Llama-3-8B@main/model.safetensors",
        "file:llama.gguf",
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "models/llama/weights.bin",
        "plain-name",
        "a/.../b",
        "a/..b/c",
        "a..b",
        "My Model (v2)",
        "modèle",
        "model🚀",
        "hf:org/rеpo",
    ] {
        let r = ModelRef::new(s).unwrap();
        assert_eq!(r.to_string(), s);
    }
    assert_eq!(ModelRef::new("file:x").unwrap().scheme(), Some("file"));
    assert_eq!(ModelRef::new("x").unwrap().scheme(), None);
}
