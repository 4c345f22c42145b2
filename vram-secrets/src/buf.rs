//! Heap buffers for key material that zeroize when dropped.
//!
//! Every buffer this crate owns that holds a secret, a derived key or an
//! HKDF intermediate is a [`KeyBuf`]: allocated zeroed on the heap and filled
//! in place (moving it moves a pointer, never the bytes), and overwritten
//! with zeros on drop. Under `cfg(test)` the drop also tells the
//! test-only `probe` module what the buffer held once it was cleared, so the
//! tests can show that no freed buffer of ours still holds key bytes.

use zeroize::Zeroize;

/// Length of a [`SecretKey`](crate::SecretKey) in bytes.
pub const KEY_LEN: usize = 32;

/// A 32-byte zeroizing heap buffer, named for the probe.
pub(crate) struct KeyBuf {
    bytes: Box<[u8; KEY_LEN]>,
    #[cfg_attr(not(test), allow(dead_code))]
    label: &'static str,
}

impl KeyBuf {
    /// A zeroed buffer; `label` names it in the test probe.
    pub(crate) fn new(label: &'static str) -> KeyBuf {
        KeyBuf {
            bytes: Box::new([0u8; KEY_LEN]),
            label,
        }
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8; KEY_LEN] {
        &mut self.bytes
    }
}

impl Drop for KeyBuf {
    fn drop(&mut self) {
        self.bytes.zeroize();
        #[cfg(test)]
        crate::probe::freed(self.label, &self.bytes[..]);
    }
}
