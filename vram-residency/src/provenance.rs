//! Provenance: which signed model a shard's bytes were checked against before
//! they were sealed (seal format version 3).

use serde::{Deserialize, Serialize};
use vram_crypto::SealProvenance;
use vram_validation::{ProvenanceName, ValidationError};

/// Which signed model, and which file of it, sealed bytes were checked
/// against: bound into the seal (format version 3) and carried by the
/// shard's [`ModelShardHandle`](crate::ModelShardHandle).
///
/// The manager does not check signatures: the caller verifies the
/// publisher's signature (an OpenSSF model_signing bundle, say) and that the
/// bytes are the file the signed statement lists, *before* sealing with
/// [`SealRequest::provenance`](crate::SealRequest::provenance) set. The seal
/// then proves which statement and which file the resident bytes were
/// checked against.
///
/// Serialized (in handles) as an object of 64 lower-case hex digits for
/// each digest and the two names as strings; reading one checks the same
/// rules as [`Provenance::new`] (upper-case hex is refused: a handle has
/// one spelling).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// SHA-256 of the publisher's public key (the key the signature was
    /// checked with).
    #[serde(with = "hex32")]
    pub publisher_key_sha256: [u8; 32],
    /// SHA-256 of the signed in-toto statement as signed (the DSSE payload
    /// bytes): binds every field of the statement, not only its subject
    /// digest, which two statements with different file names may share.
    #[serde(with = "hex32")]
    pub statement_sha256: [u8; 32],
    /// The model's name in the signed statement.
    pub model_name: ProvenanceName,
    /// The file's name in the signed manifest (`sub/tokenizer.json`), or `.`
    /// for a single-file model.
    pub resource_name: ProvenanceName,
}

impl Provenance {
    /// A provenance from raw parts, validating both names
    /// ([`ProvenanceName::new`]).
    ///
    /// # Errors
    /// [`ValidationError`] for an empty name, one over
    /// [`MAX_PROVENANCE_NAME_LEN`](vram_validation::MAX_PROVENANCE_NAME_LEN)
    /// bytes, or one with a control character.
    pub fn new(
        publisher_key_sha256: [u8; 32],
        statement_sha256: [u8; 32],
        model_name: &str,
        resource_name: &str,
    ) -> Result<Provenance, ValidationError> {
        Ok(Provenance {
            publisher_key_sha256,
            statement_sha256,
            model_name: ProvenanceName::new(model_name)?,
            resource_name: ProvenanceName::new(resource_name)?,
        })
    }

    /// The provenance block a version 3 seal encodes.
    pub(crate) fn as_seal(&self) -> SealProvenance<'_> {
        SealProvenance {
            publisher_key_sha256: self.publisher_key_sha256,
            statement_sha256: self.statement_sha256,
            model_name: self.model_name.as_str(),
            resource_name: self.resource_name.as_str(),
        }
    }

    /// The provenance as a `vram_sealed` audit record spells it.
    pub(crate) fn audit_record(&self) -> vram_audit::SealProvenanceRecord {
        vram_audit::SealProvenanceRecord {
            publisher_key_sha256: vram_validation::hex::encode(&self.publisher_key_sha256),
            statement_sha256: vram_validation::hex::encode(&self.statement_sha256),
            model_name: self.model_name.to_string(),
            resource_name: self.resource_name.to_string(),
        }
    }

    /// Whether two shards' provenances name one signed model (publisher key,
    /// statement and model name; the files may differ): the parts of one
    /// tensor-parallel set must. Two shards without provenance agree too.
    pub(crate) fn same_statement(a: Option<&Provenance>, b: Option<&Provenance>) -> bool {
        match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                a.publisher_key_sha256 == b.publisher_key_sha256
                    && a.statement_sha256 == b.statement_sha256
                    && a.model_name == b.model_name
            }
            _ => false,
        }
    }
}

/// 32 bytes as 64 lower-case hex digits; reads only that spelling.
mod hex32 {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&vram_validation::hex::encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        vram_validation::hex::decode_lower(text)
            .ok_or_else(|| D::Error::custom("expected 64 lower-case hex digits"))
    }
}
