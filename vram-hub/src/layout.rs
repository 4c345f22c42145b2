//! Which files of a Hugging Face snapshot directory make up the model: the
//! weights an engine loads (a single `model.safetensors`, or the shards that
//! `model.safetensors.index.json` names, those and only those; else one GGUF
//! model, a file or all the parts of a split one) and the small
//! files that change what the model computes (its config, the tokenizer, the
//! sentence-transformers modules), which are bound to the model's seal.

use std::path::{Component, Path};

use serde::Deserialize;
use vram_validation::escape_for_log;

use crate::HubError;

/// The weights of a single-file snapshot.
pub const SINGLE_WEIGHTS_FILE: &str = "model.safetensors";
/// The index of a sharded snapshot: `weight_map` maps each tensor to the
/// shard file that holds it.
pub const WEIGHTS_INDEX_FILE: &str = "model.safetensors.index.json";
/// Largest index file read (the index of a 400-billion-parameter model is
/// under 1 MiB).
pub const MAX_INDEX_BYTES: u64 = 16 * 1024 * 1024;
/// Most weight files a sharded snapshot may name.
pub const MAX_WEIGHT_FILES: usize = 4096;

/// The small files that decide what a model computes from its weights, in
/// the order they are bound: the model's configuration, its tokenizer and
/// chat template, and sentence-transformers' module list and settings.
/// Those present in the directory are bound; the modules' own `config.json`
/// (`1_Pooling/config.json`) are added from `modules.json`.
pub const INFERENCE_FILES: &[&str] = &[
    "config.json",
    "generation_config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "chat_template.jinja",
    "chat_template.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
];

/// Most sentence-transformers modules read from `modules.json`.
#[cfg(test)]
const MAX_MODULES: usize = vram_format::sentence_transformers::MAX_MODULES;
/// Largest `modules.json` read.
const MAX_MODULES_BYTES: u64 = 1024 * 1024;

/// What a snapshot directory holds, by name (relative to the directory,
/// `/`-separated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelLayout {
    /// The weights files, in the order they are sealed: `model.safetensors`
    /// alone, or the index's shard files sorted by name.
    pub weights: Vec<String>,
    /// The small files to bind to the seal: those of [`INFERENCE_FILES`]
    /// present, the index of a sharded snapshot, then each module's
    /// `config.json` that `modules.json` leads to.
    pub inference_files: Vec<String>,
}

#[derive(Deserialize)]
struct Index {
    weight_map: std::collections::BTreeMap<String, String>,
}

impl ModelLayout {
    /// Reads which files of the snapshot directory `dir` are the model.
    ///
    /// The weights are `model.safetensors` when it is there (what
    /// `transformers` loads first), otherwise the files named in
    /// `model.safetensors.index.json`'s `weight_map`: each a plain relative
    /// name (no `..`, no absolute path) of a regular file in the directory
    /// (links are followed, as a hub cache's snapshot is made of links).
    /// Other weight files (`.bin`, `.onnx`, unlisted `.safetensors`) are not
    /// part of the model.
    ///
    /// # Errors
    /// [`HubError::Layout`] when there are no weights, the index is not
    /// valid JSON with a non-empty `weight_map`, names a file outside the
    /// directory or one that is missing or not a regular file, or names more
    /// than [`MAX_WEIGHT_FILES`]; [`HubError::Io`] when a file cannot be read.
    pub fn of_dir(dir: &Path) -> Result<Self, HubError> {
        let mut inference_files: Vec<String> = INFERENCE_FILES
            .iter()
            .filter(|name| is_regular_file(&dir.join(name)))
            .map(|name| (*name).to_owned())
            .collect();
        let weights = if is_regular_file(&dir.join(SINGLE_WEIGHTS_FILE)) {
            vec![SINGLE_WEIGHTS_FILE.to_owned()]
        } else if is_regular_file(&dir.join(WEIGHTS_INDEX_FILE)) {
            inference_files.push(WEIGHTS_INDEX_FILE.to_owned());
            index_shards(dir)?
        } else if let Some(parts) = gguf_files(dir)? {
            // A GGUF model carries its tokenizer, chat template and
            // hyperparameters inside the file: its weights are the model.
            parts
        } else {
            return Err(layout(
                dir,
                format!(
                    "neither {SINGLE_WEIGHTS_FILE} nor {WEIGHTS_INDEX_FILE} nor a GGUF file is there"
                ),
            ));
        };
        if inference_files.iter().any(|f| f == "modules.json") {
            for config in module_configs(dir)? {
                if !inference_files.contains(&config) {
                    inference_files.push(config);
                }
            }
        }
        Ok(Self {
            weights,
            inference_files,
        })
    }
}

impl ModelLayout {
    /// The parts of the split GGUF model that `part` (a file name in `dir`,
    /// `NAME-0000i-of-0000N.gguf`) belongs to, in part order, whatever else
    /// the directory holds (a hub repository's other quantizations): what
    /// `llama-server -m PART` loads. A GGUF model carries its tokenizer and
    /// hyperparameters inside: no small file is bound.
    ///
    /// # Errors
    /// [`HubError::Layout`] when `part` is not a part name, or its model's
    /// parts are not all there as regular files, or one is extra (named);
    /// [`HubError::Io`] when the directory cannot be read.
    pub fn of_gguf_parts(dir: &Path, part: &str) -> Result<Self, HubError> {
        // A repository of many quantizations may hold more GGUF files than
        // one model has parts.
        let names = gguf_names(dir, MAX_WEIGHT_FILES.saturating_mul(16))?;
        let weights =
            vram_format::gguf_parts_of(&names, part).map_err(|e| format_layout(dir, e))?;
        if weights.len() > MAX_WEIGHT_FILES {
            return Err(layout(
                dir,
                format!("the model has more than {MAX_WEIGHT_FILES} parts"),
            ));
        }
        Ok(Self {
            weights,
            inference_files: Vec::new(),
        })
    }
}

fn layout(dir: &Path, reason: String) -> HubError {
    HubError::Layout {
        dir: dir.to_owned(),
        reason,
    }
}

/// The format's verdict on the directory's files, as a layout error.
fn format_layout(dir: &Path, e: vram_format::FormatError) -> HubError {
    match e {
        vram_format::FormatError::Layout { reason } => layout(dir, reason),
        other => layout(dir, other.to_string()),
    }
}

/// The names of the directory's GGUF files that are regular files (links
/// followed), sorted; more than `limit` is refused.
fn gguf_names(dir: &Path, limit: usize) -> Result<Vec<String>, HubError> {
    let entries = std::fs::read_dir(dir).map_err(|e| HubError::io(dir, &e))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| HubError::io(dir, &e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if vram_format::is_gguf_name(&name) && is_regular_file(&entry.path()) {
            if names.len() >= limit {
                return Err(layout(dir, format!("holds more than {limit} GGUF files")));
            }
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// The one GGUF model of the directory (a file, or a split model's parts:
/// `vram_format::gguf_model_files`), `None` when it holds no GGUF file.
fn gguf_files(dir: &Path) -> Result<Option<Vec<String>>, HubError> {
    let names = gguf_names(dir, MAX_WEIGHT_FILES)?;
    vram_format::gguf_model_files(&names).map_err(|e| format_layout(dir, e))
}

fn is_regular_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file())
}

/// Whether `name` stays inside the directory it is relative to.
/// The name of the split GGUF model whose part `path` names: a file (not a
/// directory) called `NAME-0000i-of-0000N.gguf` with N > 1, as llama.cpp's
/// `gguf-split` writes them; `None` for any other path. What `vram seal`
/// and `vram-serve --model` take as the whole model
/// ([`ModelLayout::of_gguf_parts`] finds its parts).
#[must_use]
pub fn gguf_part_model(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    let (base, _, count) = vram_format::split_part(&name)?;
    (count > 1 && !path.is_dir()).then(|| base.to_owned())
}

pub(crate) fn is_plain_relative(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('\\')
        && Path::new(name)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// The distinct files the index's `weight_map` names, sorted.
fn index_shards(dir: &Path) -> Result<Vec<String>, HubError> {
    let bytes = crate::read_model_file(dir, WEIGHTS_INDEX_FILE, MAX_INDEX_BYTES)?;
    let index: Index = serde_json::from_slice(&bytes).map_err(|e| {
        layout(
            dir,
            format!(
                "{WEIGHTS_INDEX_FILE} is not a safetensors index: {}",
                escape_for_log(&e.to_string(), 200)
            ),
        )
    })?;
    let mut files: Vec<String> = index.weight_map.into_values().collect();
    files.sort();
    files.dedup();
    if files.is_empty() {
        return Err(layout(
            dir,
            format!("{WEIGHTS_INDEX_FILE} maps no tensor to a file"),
        ));
    }
    if files.len() > MAX_WEIGHT_FILES {
        return Err(layout(
            dir,
            format!(
                "{WEIGHTS_INDEX_FILE} names {} files, more than {MAX_WEIGHT_FILES}",
                files.len()
            ),
        ));
    }
    for f in &files {
        if !is_plain_relative(f) {
            return Err(layout(
                dir,
                format!(
                    "{WEIGHTS_INDEX_FILE} names `{}`, which is not a file inside the snapshot",
                    escape_for_log(f, 200)
                ),
            ));
        }
        if !is_regular_file(&dir.join(f)) {
            return Err(layout(
                dir,
                format!(
                    "{WEIGHTS_INDEX_FILE} names `{}`, which is missing or not a regular file",
                    escape_for_log(f, 200)
                ),
            ));
        }
    }
    Ok(files)
}

/// The `config.json` of each sentence-transformers module that has one
/// (`1_Pooling/config.json`), in `modules.json`'s order.
fn module_configs(dir: &Path) -> Result<Vec<String>, HubError> {
    let bytes = crate::read_model_file(dir, "modules.json", MAX_MODULES_BYTES)?;
    let modules = vram_format::sentence_transformers::Modules::parse(&bytes)
        .map_err(|e| layout(dir, e.to_string()))?;
    Ok(modules
        .module_configs()
        .filter(|config| is_regular_file(&dir.join(config)))
        .collect())
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn a_split_gguf_model_is_found_by_any_part_beside_other_models() {
        let d = dir_with(&[
            ("m-Q8_0-00001-of-00002.gguf", "a"),
            ("m-Q8_0-00002-of-00002.gguf", "b"),
            ("m-Q4_K-00001-of-00002.gguf", "c"),
            ("m-F16.gguf", "d"),
            ("README.md", "e"),
        ]);
        let l = ModelLayout::of_gguf_parts(d.path(), "m-Q8_0-00002-of-00002.gguf").unwrap();
        assert_eq!(
            l.weights,
            ["m-Q8_0-00001-of-00002.gguf", "m-Q8_0-00002-of-00002.gguf"]
        );
        assert!(l.inference_files.is_empty());
        let e = ModelLayout::of_gguf_parts(d.path(), "m-Q4_K-00001-of-00002.gguf")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("part m-Q4_K-00002-of-00002.gguf is missing"),
            "{e}"
        );
        // A directory where a part should be is not a part.
        std::fs::create_dir(d.path().join("x-00001-of-00001.gguf")).unwrap();
        assert!(ModelLayout::of_gguf_parts(d.path(), "x-00001-of-00001.gguf").is_err());
        // Which paths name a part of a split model.
        let part = d.path().join("m-Q8_0-00002-of-00002.gguf");
        assert_eq!(gguf_part_model(&part).as_deref(), Some("m-Q8_0"));
        assert_eq!(gguf_part_model(Path::new("x-00001-of-00001.gguf")), None);
        assert_eq!(gguf_part_model(Path::new("model.gguf")), None);
        std::fs::create_dir(d.path().join("n-00001-of-00002.gguf")).unwrap();
        assert_eq!(
            gguf_part_model(&d.path().join("n-00001-of-00002.gguf")),
            None
        );
    }

    #[test]
    fn a_single_file_snapshot_and_its_inference_files() {
        let d = dir_with(&[
            ("model.safetensors", "x"),
            ("config.json", "{}"),
            ("tokenizer.json", "{}"),
            (
                "modules.json",
                r#"[{"path":""},{"path":"1_Pooling"},{"path":"2_Normalize"}]"#,
            ),
            ("1_Pooling/config.json", "{}"),
            ("pytorch_model.bin", "ignored"),
            ("README.md", "ignored"),
        ]);
        let l = ModelLayout::of_dir(d.path()).unwrap();
        assert_eq!(l.weights, ["model.safetensors"]);
        assert_eq!(
            l.inference_files,
            [
                "config.json",
                "tokenizer.json",
                "modules.json",
                "1_Pooling/config.json"
            ]
        );
    }

    #[test]
    fn a_sharded_snapshot_is_the_files_its_index_names_and_only_those() {
        let d = dir_with(&[
            (
                WEIGHTS_INDEX_FILE,
                r#"{"metadata":{"total_size":2},"weight_map":{"b":"model-00002-of-00002.safetensors","a":"model-00001-of-00002.safetensors","c":"model-00001-of-00002.safetensors"}}"#,
            ),
            ("model-00001-of-00002.safetensors", "1"),
            ("model-00002-of-00002.safetensors", "2"),
            ("model-00003-of-00003.safetensors", "not named"),
            ("config.json", "{}"),
        ]);
        let l = ModelLayout::of_dir(d.path()).unwrap();
        assert_eq!(
            l.weights,
            [
                "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors"
            ]
        );
        assert_eq!(l.inference_files, ["config.json", WEIGHTS_INDEX_FILE]);
    }

    #[test]
    fn bad_indexes_are_refused_with_the_reason() {
        for (index, extra, needle) in [
            (r#"{"weight_map":{}}"#, None, "maps no tensor"),
            (
                r#"{"weight_map":{"a":"../x.safetensors"}}"#,
                None,
                "not a file inside",
            ),
            (
                r#"{"weight_map":{"a":"/etc/passwd"}}"#,
                None,
                "not a file inside",
            ),
            (
                r#"{"weight_map":{"a":"missing.safetensors"}}"#,
                None,
                "missing or not a regular file",
            ),
            (
                r#"{"weight_map":{"a":"sub"}}"#,
                Some("sub/x"),
                "missing or not a regular file",
            ),
            (r#"{"weight_map":[]}"#, None, "not a safetensors index"),
            ("not json", None, "not a safetensors index"),
        ] {
            let mut files = vec![(WEIGHTS_INDEX_FILE, index)];
            if let Some(e) = extra {
                files.push((e, ""));
            }
            let d = dir_with(&files);
            let e = ModelLayout::of_dir(d.path()).unwrap_err().to_string();
            assert!(e.contains(needle), "{index}: {e}");
        }
        let d = dir_with(&[("config.json", "{}")]);
        let e = ModelLayout::of_dir(d.path()).unwrap_err().to_string();
        assert!(e.contains("neither model.safetensors nor"), "{e}");
    }

    #[test]
    fn module_paths_must_stay_inside() {
        let d = dir_with(&[
            ("model.safetensors", "x"),
            ("modules.json", r#"[{"path":"../up"}]"#),
        ]);
        let e = ModelLayout::of_dir(d.path()).unwrap_err().to_string();
        assert!(e.contains("leaves the snapshot"), "{e}");
    }

    #[test]
    fn the_single_file_wins_over_an_index() {
        let d = dir_with(&[
            ("model.safetensors", "x"),
            (
                WEIGHTS_INDEX_FILE,
                r#"{"weight_map":{"a":"gone.safetensors"}}"#,
            ),
        ]);
        let l = ModelLayout::of_dir(d.path()).unwrap();
        assert_eq!(l.weights, ["model.safetensors"]);
        assert!(!l.inference_files.iter().any(|f| f == WEIGHTS_INDEX_FILE));
    }

    /// `text` padded with spaces (still the same JSON) to exactly `len` bytes.
    fn padded(text: &str, len: u64) -> String {
        let mut s = text.to_owned();
        s.extend(std::iter::repeat_n(' ', len as usize - text.len()));
        s
    }

    #[test]
    fn the_index_is_read_up_to_its_cap_exactly() {
        let index = r#"{"weight_map":{"a":"x.safetensors"}}"#;
        for (len, ok) in [
            (2 * 1024 * 1024, true),
            (MAX_INDEX_BYTES, true),
            (MAX_INDEX_BYTES + 1, false),
        ] {
            let d = dir_with(&[("x.safetensors", "")]);
            std::fs::write(d.path().join(WEIGHTS_INDEX_FILE), padded(index, len)).unwrap();
            match ModelLayout::of_dir(d.path()) {
                Ok(l) => assert!(ok, "{len}: {l:?}"),
                Err(e) => {
                    assert!(!ok, "{len}: {e}");
                    assert!(
                        e.to_string().contains("is larger than 16777216 bytes"),
                        "{e}"
                    );
                }
            }
        }
    }

    #[test]
    fn an_index_may_name_up_to_4096_files() {
        for (n, ok) in [(MAX_WEIGHT_FILES, true), (MAX_WEIGHT_FILES + 1, false)] {
            let d = tempfile::tempdir().unwrap();
            let mut map = serde_json::Map::new();
            for i in 0..n {
                let name = format!("m-{i:05}.safetensors");
                std::fs::write(d.path().join(&name), "").unwrap();
                map.insert(format!("t{i}"), serde_json::Value::from(name));
            }
            let index = serde_json::json!({ "weight_map": map }).to_string();
            std::fs::write(d.path().join(WEIGHTS_INDEX_FILE), index).unwrap();
            match ModelLayout::of_dir(d.path()) {
                Ok(l) => assert!(ok && l.weights.len() == n, "{n}"),
                Err(e) => assert!(!ok && e.to_string().contains("more than 4096"), "{n}: {e}"),
            }
        }
    }

    #[test]
    fn modules_json_is_read_up_to_its_caps_exactly() {
        let module = r#"{"path":"p","type":"t"}"#;
        let list = |n: usize| format!("[{}]", vec![module; n].join(","));
        for (text, ok) in [
            (list(MAX_MODULES), true),
            (list(MAX_MODULES + 1), false),
            // A 1 MiB modules.json is fine (the cap, written out).
            (padded(&list(1), 1 << 20), true),
            (padded(&list(1), MAX_MODULES_BYTES), true),
            (padded(&list(1), MAX_MODULES_BYTES + 1), false),
        ] {
            let d = dir_with(&[("model.safetensors", ""), ("p/config.json", "{}")]);
            std::fs::write(d.path().join("modules.json"), &text).unwrap();
            match ModelLayout::of_dir(d.path()) {
                Ok(l) => assert!(ok && l.inference_files.contains(&"p/config.json".to_owned())),
                Err(e) => assert!(!ok, "{} bytes: {e}", text.len()),
            }
        }
    }
}
