//! The signed in-toto statement: model name, subject digest, serialization
//! rules and resources.

use crate::error::{shown, SigningError};
use serde_json::Value;

/// The in-toto statement type model_signing signs.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The predicate type of model_signing 1.x.
pub const PREDICATE_TYPE: &str = "https://model_signing/signature/v1.0";
/// The predicate type of model_signing 0.2 (no serialization rules, no
/// subject digest): refused.
const PREDICATE_TYPE_V0_1: &str = "https://model_signing/Digests/v0.1";
/// Most resources (files) a statement may list.
pub const MAX_RESOURCES: usize = 1_000_000;
/// Longest resource name, in bytes.
pub const MAX_RESOURCE_NAME: usize = 4096;
/// Most ignored paths a statement may list.
const MAX_IGNORE_PATHS: usize = 4096;

/// How the model was serialized into resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serialization {
    /// `files`: one resource per file (the only method supported).
    pub method: String,
    /// `sha256` (the only hash supported).
    pub hash_type: String,
    /// Whether symbolic links in the model are followed.
    pub allow_symlinks: bool,
    /// Paths relative to the model that are not part of the signature.
    pub ignore_paths: Vec<String>,
}

/// One signed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedResource {
    /// Its path relative to the model, `/`-separated; `.` for a single-file
    /// model.
    pub name: String,
    /// Its SHA-256.
    pub sha256: [u8; 32],
}

/// A statement whose signature verified and whose subject digest matches its
/// resources. Only [`verify_bundle`](crate::verify_bundle) makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedModel {
    pub(crate) model_name: String,
    pub(crate) subject_sha256: [u8; 32],
    pub(crate) statement_sha256: [u8; 32],
    pub(crate) serialization: Serialization,
    /// Sorted by name, names unique.
    pub(crate) resources: Vec<SignedResource>,
    pub(crate) publisher_key_sha256: [u8; 32],
}

impl SignedModel {
    /// The model's name as signed (the directory or file name it was signed
    /// under; informative).
    #[must_use]
    pub fn model_name(&self) -> &str {
        &self.model_name
    }

    /// The statement's subject digest: SHA-256 over the resources' digests in
    /// the order the statement lists them. It names the whole signed model.
    #[must_use]
    pub fn subject_sha256(&self) -> [u8; 32] {
        self.subject_sha256
    }

    /// SHA-256 of the statement as signed: the DSSE payload bytes the
    /// signature covers. Unlike [`Self::subject_sha256`], which covers only
    /// the resources' digests in order (two statements that name their
    /// files differently share it), it binds every field of the statement:
    /// what a seal records (`statement_sha256`).
    #[must_use]
    pub fn statement_sha256(&self) -> [u8; 32] {
        self.statement_sha256
    }

    /// The serialization rules.
    #[must_use]
    pub fn serialization(&self) -> &Serialization {
        &self.serialization
    }

    /// The signed files, sorted by name.
    #[must_use]
    pub fn resources(&self) -> &[SignedResource] {
        &self.resources
    }

    /// The fingerprint of the key whose signature verified
    /// ([`PublicKey::fingerprint`](crate::PublicKey::fingerprint)).
    #[must_use]
    pub fn publisher_key_sha256(&self) -> [u8; 32] {
        self.publisher_key_sha256
    }

    /// The SHA-256 a file of the model must have, by its name.
    #[must_use]
    pub fn digest_of(&self, name: &str) -> Option<[u8; 32]> {
        self.resources
            .binary_search_by(|r| r.name.as_str().cmp(name))
            .ok()
            .and_then(|i| self.resources.get(i))
            .map(|r| r.sha256)
    }
}

fn field<'a>(v: &'a Value, key: &str) -> Result<&'a Value, SigningError> {
    v.get(key)
        .ok_or_else(|| SigningError::malformed(format!("the statement has no `{key}`")))
}

fn string<'a>(v: &'a Value, key: &str) -> Result<&'a str, SigningError> {
    field(v, key)?
        .as_str()
        .ok_or_else(|| SigningError::malformed(format!("the statement's `{key}` is not a string")))
}

pub(crate) fn sha256_hex(s: &str, what: &str) -> Result<[u8; 32], SigningError> {
    let bad = || SigningError::malformed(format!("{what} is not 64 hex digits"));
    vram_validation::hex::decode(s).ok_or_else(bad)
}

/// A resource name: a relative `/`-separated path with no `.`, `..` or
/// empty segment, no control characters, bounded; or `.` alone.
fn check_name(name: &str) -> Result<(), SigningError> {
    let bad = |why: &str| SigningError::malformed(format!("resource name `{}` {why}", shown(name)));
    if name.is_empty() || name.len() > MAX_RESOURCE_NAME {
        return Err(bad("is empty or too long"));
    }
    if name.chars().any(char::is_control) {
        return Err(bad("holds control characters"));
    }
    if name == "." {
        return Ok(());
    }
    if name.starts_with('/') {
        return Err(bad("is an absolute path"));
    }
    if name
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(bad("has an empty, `.` or `..` segment"));
    }
    Ok(())
}

/// Parses and checks the statement of an authenticated payload.
pub(crate) fn parse_statement(
    payload: &[u8],
    publisher_key_sha256: [u8; 32],
) -> Result<SignedModel, SigningError> {
    let v: Value = serde_json::from_slice(payload).map_err(|e| {
        SigningError::malformed(format!(
            "the statement is not JSON: {}",
            shown(&e.to_string())
        ))
    })?;
    let ty = string(&v, "_type")?;
    if ty != STATEMENT_TYPE {
        return Err(SigningError::malformed(format!(
            "expected an in-toto {STATEMENT_TYPE} statement, got `{}`",
            shown(ty)
        )));
    }
    let predicate_type = string(&v, "predicateType")?;
    if predicate_type == PREDICATE_TYPE_V0_1 {
        return Err(SigningError::UnsupportedMethod {
            what: "the model_signing 0.2 predicate (Digests/v0.1) carries no serialization \
                   rules or subject digest; sign the model again with model_signing 1.x"
                .into(),
        });
    }
    if predicate_type != PREDICATE_TYPE {
        return Err(SigningError::malformed(format!(
            "expected the predicate {PREDICATE_TYPE}, got `{}`",
            shown(predicate_type)
        )));
    }
    let subjects = field(&v, "subject")?
        .as_array()
        .ok_or_else(|| SigningError::malformed("the statement's subject is not a list"))?;
    let [subject] = subjects.as_slice() else {
        return Err(SigningError::malformed(format!(
            "expected exactly one subject, got {}",
            subjects.len()
        )));
    };
    let model_name = string(subject, "name")?;
    if model_name.len() > MAX_RESOURCE_NAME || model_name.chars().any(char::is_control) {
        return Err(SigningError::malformed(
            "the subject's name is too long or holds control characters",
        ));
    }
    let subject_sha256 = sha256_hex(
        field(subject, "digest")?
            .get("sha256")
            .and_then(Value::as_str)
            .ok_or_else(|| SigningError::malformed("the subject has no sha256 digest"))?,
        "the subject's sha256 digest",
    )?;

    let predicate = field(&v, "predicate")?;
    let ser = field(predicate, "serialization")?;
    let method = string(ser, "method")?;
    let hash_type = string(ser, "hash_type")?;
    if method != "files" {
        return Err(SigningError::UnsupportedMethod {
            what: format!(
                "serialization method `{}` (only `files`, one digest per file, is checked \
                 in the sealing pass)",
                shown(method)
            ),
        });
    }
    if hash_type != "sha256" {
        return Err(SigningError::UnsupportedMethod {
            what: format!("hash type `{}` (only sha256)", shown(hash_type)),
        });
    }
    // model_signing writes a JSON boolean; older bundles a string.
    let allow_symlinks = match ser.get("allow_symlinks") {
        None | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
        Some(_) => return Err(SigningError::malformed("allow_symlinks is not a boolean")),
    };
    let ignore_paths = match ser.get("ignore_paths") {
        None => Vec::new(),
        Some(Value::Array(items)) if items.len() <= MAX_IGNORE_PATHS => items
            .iter()
            .map(|p| {
                p.as_str()
                    .filter(|s| s.len() <= MAX_RESOURCE_NAME)
                    .map(str::to_string)
                    .ok_or_else(|| SigningError::malformed("an ignore path is not a short string"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(SigningError::malformed("ignore_paths is not a short list")),
    };

    let items = field(predicate, "resources")?
        .as_array()
        .ok_or_else(|| SigningError::malformed("resources is not a list"))?;
    if items.is_empty() || items.len() > MAX_RESOURCES {
        return Err(SigningError::malformed(format!(
            "a statement lists 1 to {MAX_RESOURCES} resources, this one {}",
            items.len()
        )));
    }
    let mut subject_hash = ring::digest::Context::new(&ring::digest::SHA256);
    let mut resources = Vec::with_capacity(items.len());
    for item in items {
        let name = string(item, "name")?;
        let algorithm = string(item, "algorithm")?;
        if algorithm != "sha256" {
            return Err(SigningError::UnsupportedMethod {
                what: format!(
                    "resource `{}` hashed with `{}` (only sha256)",
                    shown(name),
                    shown(algorithm)
                ),
            });
        }
        check_name(name)?;
        let sha256 = sha256_hex(string(item, "digest")?, "a resource digest")?;
        subject_hash.update(&sha256);
        resources.push(SignedResource {
            name: name.to_string(),
            sha256,
        });
    }
    // The subject digest, as model_signing computes it: over the digests in
    // the order listed.
    if subject_hash.finish().as_ref() != subject_sha256.as_slice() {
        return Err(SigningError::Inconsistent {
            reason: "the subject digest is not the SHA-256 of the resources' digests".into(),
        });
    }
    resources.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(pair) = resources
        .windows(2)
        .find(|w| matches!(w, [a, b] if a.name == b.name))
    {
        let name = pair.first().map(|r| r.name.as_str()).unwrap_or_default();
        return Err(SigningError::malformed(format!(
            "resource `{}` is listed twice",
            shown(name)
        )));
    }
    if resources.len() > 1 && resources.iter().any(|r| r.name == ".") {
        return Err(SigningError::malformed(
            "`.` (a single-file model) is listed beside other files",
        ));
    }
    let mut statement_sha256 = [0u8; 32];
    statement_sha256.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, payload).as_ref());
    Ok(SignedModel {
        model_name: model_name.to_string(),
        subject_sha256,
        statement_sha256,
        serialization: Serialization {
            method: method.to_string(),
            hash_type: hash_type.to_string(),
            allow_symlinks,
            ignore_paths,
        },
        resources,
        publisher_key_sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A statement over two files of the given names and digests.
    fn payload(names: [&str; 2], digests: [[u8; 32]; 2]) -> Vec<u8> {
        let hex = |d: &[u8; 32]| vram_validation::hex::encode(d);
        let mut subject = ring::digest::Context::new(&ring::digest::SHA256);
        digests.iter().for_each(|d| subject.update(d));
        let subject = hex(&subject.finish().as_ref().try_into().unwrap());
        let resources: Vec<Value> = names
            .iter()
            .zip(&digests)
            .map(|(n, d)| serde_json::json!({"name": n, "algorithm": "sha256", "digest": hex(d)}))
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "_type": STATEMENT_TYPE,
            "predicateType": PREDICATE_TYPE,
            "subject": [{"name": "model", "digest": {"sha256": subject}}],
            "predicate": {
                "serialization": {"method": "files", "hash_type": "sha256", "allow_symlinks": false},
                "resources": resources,
            },
        }))
        .unwrap()
    }

    /// Two statements that list the same digests in the same order under
    /// other file names share their subject digest; what a seal binds (the
    /// statement's own SHA-256) tells them apart.
    #[test]
    fn statements_sharing_a_subject_digest_have_different_statement_digests() {
        let digests = [[1u8; 32], [2u8; 32]];
        let a = payload(["config.json", "model.safetensors"], digests);
        let b = payload(["model.safetensors", "tokenizer.json"], digests);
        let key = [7u8; 32];
        let (sa, sb) = (
            parse_statement(&a, key).unwrap(),
            parse_statement(&b, key).unwrap(),
        );
        assert_eq!(sa.subject_sha256(), sb.subject_sha256());
        assert_ne!(sa.statement_sha256(), sb.statement_sha256());
        for (payload, signed) in [(&a, &sa), (&b, &sb)] {
            assert_eq!(
                ring::digest::digest(&ring::digest::SHA256, payload).as_ref(),
                signed.statement_sha256()
            );
        }
    }
}
