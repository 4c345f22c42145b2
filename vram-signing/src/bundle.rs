//! The Sigstore bundle (v0.3 JSON) that model_signing writes.

use crate::dsse::{pae, pae_compat, IN_TOTO_PAYLOAD_TYPE};
use crate::error::{shown, SigningError};
use crate::key::PublicKey;
use crate::statement::{parse_statement, SignedModel};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

/// Largest bundle accepted, in bytes (a million-file model's statement is
/// about 130 MB of JSON; real ones are kilobytes).
pub const MAX_BUNDLE_BYTES: usize = 256 << 20;

/// The media type model_signing 1.x writes.
const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBundle {
    media_type: Option<String>,
    verification_material: Option<RawMaterial>,
    dsse_envelope: Option<RawEnvelope>,
    message_signature: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMaterial {
    public_key: Option<RawKeyIdentifier>,
    certificate: Option<Value>,
    x509_certificate_chain: Option<Value>,
}

#[derive(Deserialize)]
struct RawKeyIdentifier {
    hint: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEnvelope {
    payload: String,
    payload_type: String,
    signatures: Vec<RawSignature>,
}

#[derive(Deserialize)]
struct RawSignature {
    sig: String,
}

/// Protobuf JSON writes bytes as standard base64; it also reads URL-safe.
fn base64_bytes(s: &str, what: &str) -> Result<Vec<u8>, SigningError> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    STANDARD
        .decode(s)
        .or_else(|_| URL_SAFE.decode(s))
        .map_err(|_| SigningError::malformed(format!("{what} is not base64")))
}

/// Verifies a model_signing bundle made with the `key` method under `key`
/// and returns the signed statement.
///
/// Checks, in order: size; media type; that the bundle is a DSSE envelope
/// with a public-key identifier (certificate and keyless bundles are
/// [`SigningError::UnsupportedMethod`]); that the key hint, when present,
/// is `key`'s fingerprint (the hint is unsigned: this only gives a clearer
/// message than a bad signature); exactly one signature, verifying over
/// [`pae`] of the payload or, as model_signing 1.1.1 still accepts, over
/// [`pae_compat`]; the payload type; then the statement: type, predicate
/// type, exactly one subject, the `files` serialization with `sha256`,
/// resource names (relative, no `..`, unique) and the subject digest
/// recomputed from the resources.
///
/// # Errors
/// [`SigningError`]; [`SigningError::is_integrity`] tells a forgery or a
/// wrong key from a bundle that cannot be read.
pub fn verify_bundle(bundle: &[u8], key: &PublicKey) -> Result<SignedModel, SigningError> {
    if bundle.len() > MAX_BUNDLE_BYTES {
        return Err(SigningError::malformed(format!(
            "{} bytes, over the limit of {MAX_BUNDLE_BYTES}",
            bundle.len()
        )));
    }
    let raw: RawBundle = serde_json::from_slice(bundle).map_err(|e| {
        SigningError::malformed(format!("not a Sigstore bundle: {}", shown(&e.to_string())))
    })?;
    match raw.media_type.as_deref() {
        Some(BUNDLE_MEDIA_TYPE) => {}
        Some(other) => {
            return Err(SigningError::malformed(format!(
                "media type `{}`, expected {BUNDLE_MEDIA_TYPE}",
                shown(other)
            )))
        }
        None => return Err(SigningError::malformed("no media type")),
    }
    let material = raw
        .verification_material
        .ok_or_else(|| SigningError::malformed("no verification material"))?;
    if material.certificate.is_some() || material.x509_certificate_chain.is_some() {
        return Err(SigningError::UnsupportedMethod {
            what: "a certificate or Sigstore (keyless) bundle: its certificate chain and \
                   transparency-log proof cannot be checked offline here; sign with \
                   `model_signing sign key` and pass --public-key"
                .into(),
        });
    }
    let Some(key_id) = material.public_key else {
        return Err(SigningError::UnsupportedMethod {
            what: "the bundle names no public key (only the `key` method is supported)".into(),
        });
    };
    if raw.message_signature.is_some() {
        return Err(SigningError::UnsupportedMethod {
            what: "a message-signature bundle (model_signing signs DSSE envelopes)".into(),
        });
    }
    let envelope = raw
        .dsse_envelope
        .ok_or_else(|| SigningError::malformed("no DSSE envelope"))?;
    // An empty hint is no hint, as model_signing reads it.
    if let Some(hint) = key_id.hint.filter(|h| !h.is_empty()) {
        if hint != key.fingerprint_hex() {
            return Err(SigningError::KeyMismatch {
                hint: shown(&hint),
                given: key.fingerprint_hex(),
            });
        }
    }
    let [signature] = envelope.signatures.as_slice() else {
        return Err(SigningError::malformed(format!(
            "expected exactly one signature, got {}",
            envelope.signatures.len()
        )));
    };
    let sig = base64_bytes(&signature.sig, "the signature")?;
    let payload = base64_bytes(&envelope.payload, "the payload")?;
    if !key.verifies(&pae(&payload), &sig) && !key.verifies(&pae_compat(&payload), &sig) {
        return Err(SigningError::BadSignature {
            curve: key.curve().name(),
        });
    }
    tracing::debug!(curve = key.curve().name(), "model signature verified");
    // Authenticated from here on; still checked as untrusted input.
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(SigningError::WrongPayloadType {
            found: shown(&envelope.payload_type),
            expected: IN_TOTO_PAYLOAD_TYPE,
        });
    }
    parse_statement(&payload, key.fingerprint())
}
