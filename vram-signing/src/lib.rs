//! OpenSSF model_signing bundles, verified offline.
//!
//! A model publisher signs a model with `model_signing sign key` (PyPI
//! package `model-signing`). The signature is a Sigstore bundle (v0.3 JSON)
//! whose DSSE envelope carries an in-toto Statement v1 with the predicate
//! `https://model_signing/signature/v1.0`: every file of the model with its
//! SHA-256, the serialization rules (method, hash type, symlinks, ignored
//! paths), and as the statement's subject a SHA-256 over all those digests.
//!
//! This crate checks such a bundle exactly as model_signing 1.1.1 does for
//! its `key` method, without a network:
//!
//! 1. [`PublicKey::from_pem`] reads the publisher's elliptic-curve public key
//!    (P-256, P-384 or P-521; SubjectPublicKeyInfo in PEM).
//! 2. [`verify_bundle`] parses the bundle, checks the DSSE signature over the
//!    pre-authentication encoding ([`pae`], and the older form model_signing
//!    0.2 signed, [`pae_compat`], which 1.1.1 still accepts), then the
//!    statement, and recomputes the subject digest from the resources. Only
//!    then does it return a [`SignedModel`]. The bundle's key hint is not
//!    signed: it is compared with the key given, for a clearer message, and
//!    used for nothing else.
//! 3. [`SignedModel::files_in`] lists a model directory (or single file)
//!    under model_signing's rules and returns each file with the digest it
//!    must have; a missing file, an unsigned extra file, or a symlink where
//!    the signature forbids them is an error naming the file. The caller
//!    checks the digests while it reads the bytes (`vram seal` does so in the
//!    pass that copies them to the device).
//!
//! Certificate and Sigstore (keyless) bundles need a certificate chain and a
//! transparency-log proof checked against a trust root; they are refused
//! with [`SigningError::UnsupportedMethod`], never accepted unchecked.
//!
//! ```no_run
//! use vram_signing::{verify_bundle, PublicKey};
//! let key = PublicKey::from_pem(&std::fs::read("publisher.pub")?)?;
//! let model = verify_bundle(&std::fs::read("model.sig")?, &key)?;
//! for file in model.files_in("model".as_ref(), &["model.sig".into()])? {
//!     println!("{} must hash to {}", file.name, file.sha256_hex());
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod bundle;
mod dsse;
mod error;
mod files;
mod key;
mod statement;

pub use bundle::{verify_bundle, MAX_BUNDLE_BYTES};
pub use dsse::{pae, pae_compat, IN_TOTO_PAYLOAD_TYPE};
pub use error::SigningError;
pub use files::SignedFile;
pub use key::{Curve, PublicKey};
pub use statement::{
    Serialization, SignedModel, SignedResource, MAX_RESOURCES, MAX_RESOURCE_NAME, PREDICATE_TYPE,
    STATEMENT_TYPE,
};
