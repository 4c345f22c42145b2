//! `vram seal MODEL --model-signature SIG --public-key PEM`: a model signed
//! by its publisher with OpenSSF model_signing, each file's SHA-256 checked
//! against the signed statement in the pass that copies it to the device.

use crate::exit::{io_error, shown_path, CliError};
use std::path::{Path, PathBuf};
use vram_signing::{verify_bundle, PublicKey, SignedModel, SigningError};
use vram_validation::{ModelRef, Sha256Hex};

/// One signed file to seal.
pub(crate) struct SignedInput {
    /// The file, as messages name it.
    pub(crate) shown: PathBuf,
    pub(crate) file: std::fs::File,
    pub(crate) len: u64,
    pub(crate) model_ref: ModelRef,
    /// The SHA-256 the signature gives it.
    pub(crate) expected: Sha256Hex,
    /// What the seal binds: the publisher's key, the statement, this file's
    /// name in it (seal format v3).
    pub(crate) provenance: vram_residency::Provenance,
}

/// What the signature proved, for output and the seals.
pub(crate) struct SignedPlan {
    pub(crate) model: SignedModel,
    pub(crate) inputs: Vec<SignedInput>,
    /// Signed files of zero bytes: checked here (nothing to seal).
    pub(crate) empty: Vec<String>,
}

fn signing_error(e: SigningError) -> CliError {
    let text = format!("model signature: {e}");
    match e {
        e if e.is_integrity() => CliError::integrity(format!("{text}; nothing was sealed")),
        SigningError::Io { .. } => CliError::env(text),
        _ => CliError::usage(text),
    }
}

/// Reads a `what` (the public key, the signature bundle) named on the
/// command line: at most `limit` bytes, opened as a file someone else may
/// write to ([`vram_hub::read_regular_file`]: no symbolic link, nothing but
/// a regular file, a FIFO refused without waiting on it).
fn read_bounded(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>, CliError> {
    vram_hub::read_regular_file(path, limit).map_err(|e| match e {
        vram_hub::HubError::FileTooLarge { .. } => CliError::usage(format!(
            "{}: larger than any {what} ({limit} bytes)",
            shown_path(path)
        )),
        e => opener_error(path, e, what),
    })
}

/// What [`vram_hub`]'s opener refused, as the CLI says it.
fn opener_error(path: &Path, e: vram_hub::HubError, what: &str) -> CliError {
    match e {
        vram_hub::HubError::Io { kind, .. } => io_error(path, &kind.into()),
        e => CliError::usage(format!("{what}: {e}")),
    }
}

/// Opens a signed file of the model for sealing: where it leads, as the
/// signature's file rules accepted it (a link only where the signature
/// allows links), then as [`vram_hub::open_regular_file`] opens a file (a
/// FIFO swapped in since is refused, not waited on; checked on the
/// descriptor). Its file and length.
fn open_signed_file(path: &Path) -> Result<(std::fs::File, u64), CliError> {
    let target = path.canonicalize().map_err(|e| io_error(path, &e))?;
    let opened = vram_hub::open_regular_file(&target, None)
        .map_err(|e| opener_error(path, e, "signed model file"))?;
    Ok((opened.file, opened.len))
}

/// The signature bundle, as a path relative to the model directory, when it
/// lies inside it (both canonicalised): then it is no file of the model. A
/// bundle elsewhere ignores nothing, so a file of the same name planted in
/// the model is still signed for, or reported as extra.
fn signature_inside(model_path: &Path, signature: &Path) -> Vec<PathBuf> {
    let (Ok(model), Ok(signature)) = (model_path.canonicalize(), signature.canonicalize()) else {
        return Vec::new();
    };
    match signature.strip_prefix(&model) {
        Ok(rel) if !rel.as_os_str().is_empty() => vec![rel.to_path_buf()],
        _ => Vec::new(),
    }
}

/// The largest public key file read (a PEM key is well under a kilobyte).
const MAX_PUBLIC_KEY_BYTES: u64 = 64 << 10;

/// SHA-256 of the empty string: what a signed empty file must hash to.
const EMPTY_SHA256: [u8; 32] = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// Verifies the bundle under the key, matches the model's files against it,
/// and opens each: everything a seal needs, before any device is touched.
pub(crate) fn plan(
    model_path: &Path,
    signature: &Path,
    public_key: &Path,
    model_ref_prefix: Option<&ModelRef>,
) -> Result<SignedPlan, CliError> {
    let key = PublicKey::from_pem(&read_bounded(
        public_key,
        MAX_PUBLIC_KEY_BYTES,
        "public key",
    )?)
    .map_err(signing_error)?;
    let bundle = read_bounded(
        signature,
        u64::try_from(vram_signing::MAX_BUNDLE_BYTES).unwrap_or(u64::MAX),
        "signature bundle",
    )?;
    let model = verify_bundle(&bundle, &key).map_err(signing_error)?;
    let files = model
        .files_in(model_path, &signature_inside(model_path, signature))
        .map_err(signing_error)?;
    let prefix = match model_ref_prefix {
        Some(r) => r.as_str().to_string(),
        None => {
            let base = model_path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| model.model_name().to_string());
            super::model_ref::file_model_ref(&base)
                .map(|r| r.as_str().to_string())
                .map_err(|e| {
                    CliError::usage(format!(
                        "{}: cannot name the model in a model reference ({e}); pass --model-ref",
                        shown_path(model_path)
                    ))
                })?
        }
    };
    let mut inputs = Vec::with_capacity(files.len());
    let mut empty = Vec::new();
    for f in files {
        let (file, len) = open_signed_file(&f.path)?;
        if len == 0 {
            if f.sha256 != EMPTY_SHA256 {
                return Err(CliError::integrity(format!(
                    "{}: is empty, but its signed SHA-256 is {}; nothing was sealed",
                    shown_path(&f.path),
                    f.sha256_hex()
                )));
            }
            empty.push(f.name);
            continue;
        }
        let reference = if f.name == "." {
            prefix.clone()
        } else {
            format!("{prefix}/{}", f.name)
        };
        let model_ref = ModelRef::new(&reference).map_err(|e| {
            CliError::usage(format!(
                "{}: cannot name it in a model reference ({e}); pass --model-ref",
                shown_path(&f.path)
            ))
        })?;
        let expected = Sha256Hex::new(&f.sha256_hex())
            .map_err(|e| CliError::env(format!("signed digest: {e}")))?;
        let provenance = vram_residency::Provenance::new(
            model.publisher_key_sha256(),
            model.statement_sha256(),
            model.model_name(),
            &f.name,
        )
        .map_err(|e| {
            CliError::usage(format!(
                "{}: the signed names cannot be bound into a seal ({e})",
                shown_path(&f.path)
            ))
        })?;
        inputs.push(SignedInput {
            shown: f.path.clone(),
            file,
            len,
            model_ref,
            expected,
            provenance,
        });
    }
    Ok(SignedPlan {
        model,
        inputs,
        empty,
    })
}
