//! Model references as operators write them: a table of real references,
//! accepted or refused, each with the reason.
// Helpers outside #[test] functions: a failed step fails the test.
#![allow(clippy::panic)]

use vram_validation::{ModelRef, ValidationError, MAX_MODEL_REF_LEN};

/// Why a reference is refused (or that it is not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Accepted,
    Traversal,
    Absolute,
    Char,
    Malformed,
}

use Verdict::{Absolute, Accepted, Char, Malformed, Traversal};

const DIGEST: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn table() -> Vec<(String, Verdict, &'static str)> {
    let mut rows: Vec<(String, Verdict, &'static str)> = [
        // Hub, object stores, web.
        ("hf://meta-llama/Llama-3.1-8B", Accepted, "hub repo"),
        (
            "hf://meta-llama/Llama-3.1-8B@main/model-00001-of-00004.safetensors",
            Accepted,
            "hub file at a revision",
        ),
        (
            "hf://org/model@0123abcd/sub/dir/w.bin",
            Accepted,
            "commit and nested path",
        ),
        (
            "hf:meta-llama/Llama-3-8B@main/model.safetensors",
            Accepted,
            "seed form",
        ),
        (
            "s3://my-bucket/models/llama/weights.safetensors",
            Accepted,
            "S3 object",
        ),
        (
            "s3://my-bucket/models/llama%2Fv2/w.bin",
            Accepted,
            "encoded separator, no traversal",
        ),
        (
            "gs://bucket/key/with spaces.bin",
            Accepted,
            "GCS object with a space",
        ),
        ("gs://bucket/a%20b.bin", Accepted, "encoded space"),
        (
            "https://example.com/models/w.gguf?download=1",
            Accepted,
            "URL with a query",
        ),
        (
            "s3://bucket/100%25/w.bin",
            Accepted,
            "a literal percent, encoded",
        ),
        // Local files.
        (
            "file:///srv/models/llama.gguf",
            Accepted,
            "file URI: an absolute path on purpose",
        ),
        (
            "FILE:///srv/models/llama.gguf",
            Accepted,
            "scheme is case-insensitive",
        ),
        ("file:///srv/mod%C3%A8les/w.bin", Accepted, "encoded UTF-8"),
        (
            "file:llama.gguf",
            Accepted,
            "relative to the model directory",
        ),
        // OCI.
        ("ghcr.io/org/model:tag", Accepted, "OCI tag"),
        ("ghcr.io/org/model:v1.2.3", Accepted, "OCI tag with dots"),
        (
            "localhost:5000/ns/model:latest",
            Accepted,
            "registry with a port",
        ),
        // Content addressed, plain names, UTF-8.
        ("models/llama/weights.bin", Accepted, "relative path"),
        ("modèles/poids.bin", Accepted, "UTF-8 name"),
        ("モデル/重み.safetensors", Accepted, "CJK name"),
        ("s3://bucket/نموذج.bin", Accepted, "Arabic name in a key"),
        ("model🚀", Accepted, "emoji"),
        ("My Model (v2)", Accepted, "spaces and parentheses"),
        ("a..b/c...d", Accepted, "dots inside a segment"),
        // Traversal, plain and encoded.
        ("hf://../x", Traversal, ".. right after the scheme"),
        ("hf://org/../../etc/passwd", Traversal, ".. in a URI path"),
        ("hf://org/%2e%2e/%2e%2e/etc", Traversal, "encoded .."),
        (
            "hf://org/%2E%2E%2F%2E%2E%2Fetc",
            Traversal,
            "encoded .. and /",
        ),
        ("s3://bucket/a%5C..%5Cb", Traversal, "encoded backslash"),
        ("hf://org/%252e%252e/x", Traversal, "double-encoded .."),
        (
            "file:///srv/models/../../etc/shadow",
            Traversal,
            ".. in a file URI",
        ),
        (
            "file:///srv/%2e%2e/etc/shadow",
            Traversal,
            "encoded .. in a file URI",
        ),
        ("../weights.bin", Traversal, "relative .."),
        ("models\\..\\..\\secret", Traversal, "backslash .."),
        ("%2e%2e/etc/passwd", Traversal, "encoded relative .."),
        ("file:../x", Traversal, ".. after a scheme"),
        // Absolute where it must not be.
        (
            "hf:///etc/passwd",
            Absolute,
            "empty authority outside file:",
        ),
        (
            "s3:///bucket/key",
            Absolute,
            "empty authority outside file:",
        ),
        ("hf://%2Fetc/passwd", Absolute, "encoded leading /"),
        ("/etc/passwd", Absolute, "absolute path"),
        ("\\\\server\\share\\w.bin", Absolute, "UNC path"),
        (
            "file:/etc/passwd",
            Absolute,
            "file: without //; write file:///",
        ),
        ("%2Fetc/passwd", Absolute, "encoded absolute path"),
        // Characters.
        ("model\0", Char, "NUL"),
        ("model\n[INFO] sealed", Char, "newline"),
        ("model\u{1b}[2J", Char, "escape sequence"),
        ("model\u{85}", Char, "C1 control"),
        ("model\u{9b}31m", Char, "C1 CSI"),
        ("model\u{202e}nib.exe", Char, "right-to-left override"),
        ("model\u{202a}x", Char, "left-to-right embedding"),
        ("model\u{2066}x\u{2069}", Char, "bidi isolates"),
        ("model\u{200b}", Char, "zero-width space"),
        ("model\u{feff}", Char, "byte order mark"),
        ("model\u{2028}x", Char, "line separator"),
        // Malformed.
        ("model%00", Malformed, "encoded NUL"),
        ("model%0A[INFO] sealed", Malformed, "encoded newline"),
        ("model%E2%80%AE", Malformed, "encoded RLO"),
        ("model%", Malformed, "truncated escape"),
        ("model%2", Malformed, "truncated escape"),
        ("50%off.bin", Malformed, "a bare %: write %25"),
        ("model%ff", Malformed, "decodes to non-UTF-8"),
        ("file://host/etc/passwd", Malformed, "file URI with a host"),
        (
            "file://localhost/srv/w.bin",
            Malformed,
            "file URI with a host",
        ),
        ("file:///", Malformed, "file URI naming no file"),
        ("hf://", Malformed, "nothing after the scheme"),
    ]
    .into_iter()
    .map(|(s, v, why)| (s.to_owned(), v, why))
    .collect();
    rows.push((
        format!("registry.example.com/ns/model@sha256:{DIGEST}"),
        Accepted,
        "OCI digest reference",
    ));
    rows.push((format!("sha256:{DIGEST}"), Accepted, "content address"));
    rows
}

fn verdict(r: &Result<ModelRef, ValidationError>) -> Verdict {
    match r {
        Ok(_) => Accepted,
        Err(ValidationError::PathTraversal { .. }) => Traversal,
        Err(ValidationError::AbsolutePath { .. }) => Absolute,
        Err(ValidationError::ForbiddenCharIn { .. }) => Char,
        Err(ValidationError::Malformed { .. }) => Malformed,
        Err(e) => panic!("unexpected error kind: {e:?}"),
    }
}

#[test]
fn real_references_are_accepted_or_refused_for_the_stated_reason() {
    let mut wrong = Vec::new();
    for (input, want, why) in table() {
        let got = ModelRef::new(&input);
        if verdict(&got) != want {
            wrong.push(format!("{input:?} ({why}): want {want:?}, got {got:?}"));
            continue;
        }
        match got {
            Ok(r) => {
                // Kept exactly as written, through text and serde.
                assert_eq!(r.as_str(), input);
                let json = serde_json::to_string(&r).unwrap();
                assert_eq!(serde_json::from_str::<ModelRef>(&json).unwrap(), r);
            }
            Err(e) => {
                let text = e.to_string();
                assert!(
                    text.chars()
                        .all(|c| (c.is_ascii() && !c.is_ascii_control()) || c == '…'),
                    "{input:?}: error text is not one escaped line: {text:?}"
                );
                // The error shows the input, escaped.
                let shown = vram_validation::escape_for_log(&input, 20);
                let prefix = shown.split('…').next().unwrap_or_default();
                assert!(text.contains(prefix), "{input:?}: {text}");
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn deserialising_checks_the_same_rules() {
    for (input, want, _) in table() {
        let json = serde_json::to_string(&input).unwrap();
        assert_eq!(
            serde_json::from_str::<ModelRef>(&json).is_ok(),
            want == Accepted,
            "{input:?}"
        );
    }
}

#[test]
fn schemes() {
    for (s, scheme) in [
        ("hf://org/m", Some("hf")),
        ("s3://b/k", Some("s3")),
        ("file:///x", Some("file")),
        ("sha256:ab", Some("sha256")),
        ("ghcr.io/org/model:tag", None),
        ("plain", None),
        ("modèle:x", None),
    ] {
        assert_eq!(ModelRef::new(s).unwrap().scheme(), scheme, "{s}");
    }
}

#[test]
fn length_is_bounded_in_bytes() {
    // 'é' is two bytes: the limit counts bytes, not characters.
    let half = "é".repeat(MAX_MODEL_REF_LEN / 2);
    assert!(ModelRef::new(&half).is_ok());
    let over = format!("{half}x");
    assert!(matches!(
        ModelRef::new(&over),
        Err(ValidationError::TooLong { len, .. }) if len == MAX_MODEL_REF_LEN + 1
    ));
}
