//! The sealer: the one holder of the seal key, which signs seal messages and
//! checks tags. Every seal the manager makes and every tag it checks (a
//! shard's, a client's handle's) goes through it.

use crate::VramError;
use vram_crypto::{
    sign_model_binding, sign_seal_with, verify_model_binding, verify_seal_with, HmacKey,
    ModelBinding, SealMessage, SealTag,
};
use vram_secrets::{KeyId, SecretKey};

/// The seal key (kept so that its bytes zeroize with the manager), the HMAC
/// key built from it once, its fingerprint, and the worker id bound into
/// every seal.
pub(crate) struct Sealer {
    _key: SecretKey,
    mac: HmacKey,
    key_id: KeyId,
    worker_id: String,
}

impl Sealer {
    /// A sealer for `key`, signing as `worker_id`.
    pub(crate) fn new(key: SecretKey, worker_id: String) -> Result<Self, VramError> {
        let mac = HmacKey::new(key.expose_secret())?;
        Ok(Self {
            key_id: key.key_id(),
            _key: key,
            mac,
            worker_id,
        })
    }

    /// The seal key's fingerprint (bound into every seal; safe to log).
    pub(crate) fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The worker id bound into every seal (format v2 and later).
    pub(crate) fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// Signs a seal message.
    pub(crate) fn sign(&self, message: &SealMessage<'_>) -> Result<SealTag, VramError> {
        Ok(sign_seal_with(&self.mac, message)?)
    }

    /// Whether `tag` authenticates `message` under this key (constant time).
    pub(crate) fn is_authentic(&self, message: &SealMessage<'_>, tag: &SealTag) -> bool {
        verify_seal_with(&self.mac, message, tag).is_ok()
    }

    /// Signs a model binding.
    pub(crate) fn sign_model(&self, binding: &ModelBinding<'_>) -> Result<SealTag, VramError> {
        Ok(sign_model_binding(&self.mac, binding)?)
    }

    /// Whether `tag` authenticates `binding` under this key (constant time).
    pub(crate) fn is_authentic_model(&self, binding: &ModelBinding<'_>, tag: &SealTag) -> bool {
        verify_model_binding(&self.mac, binding, tag).is_ok()
    }
}
