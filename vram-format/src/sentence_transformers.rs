//! The sentence-transformers layout of a snapshot: `modules.json`, the list
//! of modules a sentence embedding runs through (a `Transformer` at the top
//! level, a `Pooling` module with its `config.json`, optionally
//! `Normalize`). Parsed here once, for the hub's layout (which module
//! configs are bound to a seal) and for the embedding engine (which
//! pipeline it runs).

use std::path::{Component, Path};

use serde::Deserialize;
use vram_validation::escape_for_log;

use crate::FormatError;

/// Most modules read from `modules.json`.
pub const MAX_MODULES: usize = 64;
/// The transformer module's type.
pub const TRANSFORMER: &str = "sentence_transformers.models.Transformer";
/// The pooling module's type.
pub const POOLING: &str = "sentence_transformers.models.Pooling";
/// The normalisation module's type.
pub const NORMALIZE: &str = "sentence_transformers.models.Normalize";

/// One module: its directory (relative, `""` for the top level, no
/// trailing `/`) and its type (`""` when `modules.json` gives none).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Module {
    /// Its directory inside the snapshot.
    pub path: String,
    /// Its Python class, e.g. [`POOLING`].
    #[serde(rename = "type", default)]
    pub kind: String,
}

/// A snapshot's `modules.json`, checked: at most [`MAX_MODULES`], every
/// path inside the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Modules(Vec<Module>);

/// The pipeline an embedding engine runs: the transformer's and the
/// pooling module's directories, and whether the embedding is normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pipeline<'a> {
    /// The transformer's directory (`""`: the top level).
    pub transformer: &'a str,
    /// The pooling module's directory.
    pub pooling: &'a str,
    /// Whether a `Normalize` module follows.
    pub normalize: bool,
}

fn bad(reason: String) -> FormatError {
    FormatError::Layout { reason }
}

impl Modules {
    /// Parses `modules.json`.
    ///
    /// # Errors
    ///
    /// [`FormatError::Layout`] when it is not a JSON list of modules, lists
    /// more than [`MAX_MODULES`], or a module path leaves the snapshot.
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        let mut modules: Vec<Module> = serde_json::from_slice(bytes).map_err(|e| {
            bad(format!(
                "modules.json is not a list of modules: {}",
                escape_for_log(&e.to_string(), 200)
            ))
        })?;
        if modules.len() > MAX_MODULES {
            return Err(bad(format!(
                "modules.json lists more than {MAX_MODULES} modules"
            )));
        }
        for m in &mut modules {
            let trimmed = m.path.trim_end_matches('/');
            let inside = !trimmed.contains('\\')
                && Path::new(trimmed)
                    .components()
                    .all(|c| matches!(c, Component::Normal(_)));
            if !inside {
                return Err(bad(format!(
                    "module path `{}` leaves the snapshot directory",
                    escape_for_log(&m.path, 200)
                )));
            }
            m.path = trimmed.to_owned();
        }
        Ok(Self(modules))
    }

    /// The modules, in order.
    #[must_use]
    pub fn modules(&self) -> &[Module] {
        &self.0
    }

    /// The `config.json` of every module below the top level (the top
    /// level's files are the transformer's own), relative to the snapshot.
    pub fn module_configs(&self) -> impl Iterator<Item = String> + '_ {
        self.0
            .iter()
            .filter(|m| !m.path.is_empty())
            .map(|m| format!("{}/config.json", m.path))
    }

    /// The embedding pipeline: a `Transformer`, then a `Pooling`, then
    /// optionally one `Normalize`.
    ///
    /// # Errors
    ///
    /// [`FormatError::Layout`] for any other list.
    pub fn pipeline(&self) -> Result<Pipeline<'_>, FormatError> {
        match self.0.as_slice() {
            [t, p, rest @ ..] if t.kind == TRANSFORMER && p.kind == POOLING => {
                let normalize = match rest {
                    [] => false,
                    [n] if n.kind == NORMALIZE => true,
                    _ => {
                        return Err(bad(
                            "modules after Pooling other than one Normalize are not supported"
                                .to_owned(),
                        ))
                    }
                };
                Ok(Pipeline {
                    transformer: &t.path,
                    pooling: &p.path,
                    normalize,
                })
            }
            _ => Err(bad(
                "expected a Transformer module, then a Pooling module".to_owned()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sentence_transformers_list_gives_its_pipeline() {
        let m = Modules::parse(
            br#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
                 {"idx":1,"name":"1","path":"1_Pooling/","type":"sentence_transformers.models.Pooling"},
                 {"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]"#,
        )
        .unwrap();
        assert_eq!(
            m.pipeline().unwrap(),
            Pipeline {
                transformer: "",
                pooling: "1_Pooling",
                normalize: true
            }
        );
        assert_eq!(
            m.module_configs().collect::<Vec<_>>(),
            ["1_Pooling/config.json", "2_Normalize/config.json"]
        );
    }

    #[test]
    fn bad_lists_are_refused_with_a_reason() {
        let e = |json: &str| {
            Modules::parse(json.as_bytes())
                .and_then(|m| m.pipeline().map(|_| ()))
                .unwrap_err()
                .to_string()
        };
        assert!(e(r#"[{"path":"../up"}]"#)
            .contains("module path `../up` leaves the snapshot directory"));
        assert!(e(r#"[{"path":"/abs"}]"#).contains("leaves the snapshot"));
        assert!(e(r#"{"path":""}"#).contains("not a list of modules"));
        assert!(
            e(r#"[{"path":"a"}]"#).contains("expected a Transformer module, then a Pooling module")
        );
        let list = format!("[{}]", vec![r#"{"path":"p"}"#; MAX_MODULES + 1].join(","));
        assert!(e(&list).contains("more than 64 modules"));
    }
}
