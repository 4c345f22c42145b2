//! Plain SHA-256 (ring) and the 32-byte digest type.

use subtle::ConstantTimeEq;

use crate::hex::hex32_impls;

/// A SHA-256 digest.
///
/// `Display`, `Debug` and serde use 64 lower-case hex digits; `FromStr` also
/// accepts upper case. Compare digests that guard integrity with
/// [`Sha256Digest::ct_eq`].
///
/// `==` is constant-time too: it goes through [`Sha256Digest::ct_eq`].
#[derive(Clone, Copy)]
pub struct Sha256Digest(pub [u8; 32]);

impl PartialEq for Sha256Digest {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other)
    }
}

impl Eq for Sha256Digest {}

impl core::hash::Hash for Sha256Digest {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

hex32_impls!(Sha256Digest, "a SHA-256 digest");

impl Sha256Digest {
    /// The raw 32 bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Constant-time equality (`subtle`): the time taken does not depend on
    /// where the digests first differ.
    #[must_use]
    pub fn ct_eq(&self, other: &Self) -> bool {
        bool::from(self.0.ct_eq(&other.0))
    }
}

impl From<[u8; 32]> for Sha256Digest {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl AsRef<[u8]> for Sha256Digest {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Converts ring's digest output into our type.
pub(crate) fn from_ring(d: ring::digest::Digest) -> Sha256Digest {
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    Sha256Digest(out)
}

/// SHA-256 of `data` in one call (ring, one core).
#[must_use]
pub fn sha256(data: &[u8]) -> Sha256Digest {
    from_ring(ring::digest::digest(&ring::digest::SHA256, data))
}

/// Incremental SHA-256 over data that arrives in pieces (ring, one core).
#[derive(Clone)]
pub struct Sha256Stream {
    ctx: ring::digest::Context,
}

impl core::fmt::Debug for Sha256Stream {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sha256Stream").finish_non_exhaustive()
    }
}

impl Default for Sha256Stream {
    fn default() -> Self {
        Self::new()
    }
}

impl Sha256Stream {
    /// Starts an empty stream.
    #[must_use]
    pub fn new() -> Self {
        Self {
            ctx: ring::digest::Context::new(&ring::digest::SHA256),
        }
    }

    /// Feeds the next piece of the message.
    pub fn update(&mut self, data: &[u8]) {
        self.ctx.update(data);
    }

    /// Ends the stream and returns the digest of everything fed.
    #[must_use]
    pub fn finish(self) -> Sha256Digest {
        from_ring(self.ctx.finish())
    }
}
