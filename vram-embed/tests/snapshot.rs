//! A snapshot's small files are checked: what this crate cannot compute
//! faithfully is refused with the file named, never ignored.
// Helpers outside #[test] functions fail the test on a failed step.
#![allow(clippy::unwrap_used)]
mod common;

use common::*;
use vram_embed::{EmbedError, ModelSnapshot};

fn refused(edit: impl FnOnce(&std::path::Path), needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    write_snapshot(dir.path(), 21);
    edit(dir.path());
    let e = ModelSnapshot::open(dir.path()).unwrap_err();
    assert!(e.to_string().contains(needle), "`{e}` lacks `{needle}`");
}

fn write(dir: &std::path::Path, rel: &str, text: &str) {
    std::fs::write(dir.join(rel), text).unwrap();
}

#[test]
fn modules_outside_the_supported_pipeline_are_refused() {
    refused(
        |d| {
            write(
                d,
                "modules.json",
                &MODULES_JSON.replace("\"1_Pooling\"", "\"../elsewhere\""),
            )
        },
        "modules.json: module path `../elsewhere` leaves the snapshot directory",
    );
    refused(
        |d| {
            write(
                d,
                "modules.json",
                &MODULES_JSON.replace("\"1_Pooling\"", "\"/etc\""),
            )
        },
        "leaves the snapshot directory",
    );
    refused(
        |d| {
            write(
                d,
                "modules.json",
                &MODULES_JSON.replace("Normalize", "Dense"),
            )
        },
        "modules.json: modules after Pooling other than one Normalize are not supported",
    );
    refused(
        |d| write(d, "modules.json", "[]"),
        "expected a Transformer module, then a Pooling module",
    );
    refused(|d| write(d, "modules.json", "{"), "modules.json: ");
}

#[test]
fn pooling_configs_that_would_change_the_result_silently_are_refused() {
    refused(
        |d| {
            write(
                d,
                "1_Pooling/config.json",
                &pooling_json("pooling_mode_weightedmean_tokens"),
            )
        },
        "1_Pooling/config.json: pooling_mode_weightedmean_tokens is not supported",
    );
    refused(
        |d| {
            let mut p: serde_json::Value =
                serde_json::from_str(&pooling_json("pooling_mode_mean_tokens")).unwrap();
            p["pooling_mode_cls_token"] = true.into();
            write(d, "1_Pooling/config.json", &p.to_string());
        },
        "several pooling modes at once",
    );
    refused(
        |d| {
            write(
                d,
                "1_Pooling/config.json",
                &pooling_json("pooling_mode_mean_tokens").replace("32", "384"),
            );
        },
        "word_embedding_dimension is 384, the model's hidden_size is 32",
    );
    refused(
        |d| {
            write(
                d,
                "1_Pooling/config.json",
                r#"{"pooling_mode_mean_tokens": false}"#,
            )
        },
        "no pooling mode is on",
    );
}

#[test]
fn configs_are_checked() {
    refused(
        |d| {
            write(
                d,
                "config.json",
                &config_json().replace("\"gelu\"", "\"swish\""),
            )
        },
        "config.json: unknown variant `swish`",
    );
    refused(
        |d| {
            write(
                d,
                "config.json",
                &config_json().replace("\"bert\"", "\"roberta\""),
            )
        },
        "model_type is not bert",
    );
    refused(
        |d| std::fs::remove_file(d.join("tokenizer.json")).unwrap(),
        "tokenizer.json",
    );
    // An oversized config is not read whole.
    refused(
        |d| write(d, "config.json", &" ".repeat(2 * 1024 * 1024)),
        "config.json: larger than 1048576 bytes",
    );
    // max_seq_length past the position table is capped to it.
    let dir = tempfile::tempdir().unwrap();
    write_snapshot(dir.path(), 22);
    write(
        dir.path(),
        "sentence_bert_config.json",
        r#"{"max_seq_length": 100000}"#,
    );
    assert_eq!(
        ModelSnapshot::open(dir.path()).unwrap().max_seq_length(),
        MAX_POSITIONS
    );
    // Without sentence_bert_config.json: the position table's length.
    std::fs::remove_file(dir.path().join("sentence_bert_config.json")).unwrap();
    assert_eq!(
        ModelSnapshot::open(dir.path()).unwrap().max_seq_length(),
        MAX_POSITIONS
    );
    let e = ModelSnapshot::open(&dir.path().join("absent")).unwrap_err();
    assert!(matches!(e, EmbedError::Io { .. }), "{e:?}");
}
