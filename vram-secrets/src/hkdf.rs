//! HKDF-SHA256 (RFC 5869) through `ring::hkdf`.

use crate::buf::KeyBuf;
#[cfg(test)]
use ring::hkdf;

/// An output length for `ring::hkdf`, which wants it as a `KeyType`.
#[cfg(test)]
struct OutputLen(usize);

#[cfg(test)]
impl hkdf::KeyType for OutputLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-SHA256 extract-then-expand of `ikm` into `out`.
///
/// Fails only when `out` is longer than 255 × 32 bytes, the RFC 5869 limit.
/// The reference the RFC 5869 vectors run through; keys use [`hkdf_sha256_32`].
#[cfg(test)]
pub(crate) fn hkdf_sha256(
    salt: &[u8],
    ikm: &[u8],
    info: &[u8],
    out: &mut [u8],
) -> Result<(), ring::error::Unspecified> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    let info = [info];
    let okm = prk.expand(&info, OutputLen(out.len()))?;
    okm.fill(out)
}

/// HKDF-SHA256 with exactly one 32-byte output block, which cannot fail:
/// `PRK = HMAC(salt, ikm)`, `OKM = T(1) = HMAC(PRK, info || 0x01)` (RFC 5869
/// section 2.3 with L = HashLen). Equal to the general `hkdf_sha256` with a 32-byte
/// output (tested), without an error path for the one length keys use.
///
/// The output is written into `out`, the caller's zeroizing buffer (the key's
/// own heap box), so no copy of the derived key is returned by value. The PRK,
/// enough to re-derive every key, is copied out of ring's tag into a
/// zeroizing [`KeyBuf`] at once. ring's own values (the tags, the HMAC keys'
/// and context's state) cannot be cleared from safe code; they live in
/// [`derive_in_frame`]'s stack frame, which [`scrub_stack`] overwrites once
/// it has returned (best effort, see docs/threat-model.md).
pub(crate) fn hkdf_sha256_32(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut KeyBuf) {
    derive_in_frame(salt, ikm, info, out);
    scrub_stack();
}

#[inline(never)]
fn derive_in_frame(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut KeyBuf) {
    use ring::hmac;
    let mut prk = KeyBuf::new("hkdf-prk");
    {
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, salt), ikm);
        copy_tag(tag.as_ref(), prk.bytes_mut());
    }
    let prk_key = hmac::Key::new(hmac::HMAC_SHA256, prk.bytes());
    let mut ctx = hmac::Context::with_key(&prk_key);
    ctx.update(info);
    ctx.update(&[1u8]);
    let tag = ctx.sign();
    copy_tag(tag.as_ref(), out.bytes_mut());
    // `prk` zeroizes here.
}

fn copy_tag(tag: &[u8], out: &mut [u8; 32]) {
    out.iter_mut().zip(tag).for_each(|(o, t)| *o = *t);
}

/// How much stack [`scrub_stack`] overwrites: 16 KiB (a literal, so that
/// mutation testing has no arithmetic here to flip).
const SCRUB_BYTES: usize = 16_384;

/// Overwrites the stack below the caller's frame, where [`derive_in_frame`]
/// and ring's HMAC code kept their temporaries, with zeros (`zeroize` writes
/// are volatile, so the compiler keeps them). Best effort: it covers the
/// depth those calls used (well under 16 KiB), not registers or copies the
/// compiler spilled elsewhere.
#[inline(never)]
fn scrub_stack() {
    use zeroize::Zeroize;
    let mut area = [0u8; SCRUB_BYTES];
    area.zeroize();
    std::hint::black_box(&area);
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn single_block_form_equals_ring_hkdf() {
        for (salt, ikm, info) in [
            (&b""[..], &b"x"[..], &b""[..]),
            (
                b"vram-residency/hkdf-salt/v1",
                &[7u8; 32][..],
                b"vram-residency/seal-key/v1",
            ),
            (b"salt", &[0u8; 77][..], b"info"),
        ] {
            let mut expected = [0u8; 32];
            hkdf_sha256(salt, ikm, info, &mut expected).unwrap();
            let mut out = KeyBuf::new("test");
            hkdf_sha256_32(salt, ikm, info, &mut out);
            assert_eq!(out.bytes(), &expected);
        }
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 5869 appendix A, test cases 1 to 3 (SHA-256).
    #[test]
    fn rfc5869_vectors() {
        let cases = [
            (
                "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
                "000102030405060708090a0b0c",
                "f0f1f2f3f4f5f6f7f8f9",
                "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
            ),
            (
                "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\
                 202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f\
                 404142434445464748494a4b4c4d4e4f",
                "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f\
                 808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f\
                 a0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
                "b0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecf\
                 d0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeef\
                 f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
                "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c\
                 59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71\
                 cc30c58179ec3e87c14c01d5c1f3434f1d87",
            ),
            (
                "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
                "",
                "",
                "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
            ),
        ];
        for (n, (ikm, salt, info, okm)) in cases.iter().enumerate() {
            let want = unhex(okm);
            let mut got = vec![0u8; want.len()];
            hkdf_sha256(&unhex(salt), &unhex(ikm), &unhex(info), &mut got).unwrap();
            assert_eq!(got, want, "RFC 5869 test case {}", n + 1);
        }
    }

    #[test]
    fn output_longer_than_rfc_limit_is_an_error() {
        let mut out = vec![0u8; 255 * 32 + 1];
        assert!(hkdf_sha256(b"s", b"k", b"i", &mut out).is_err());
        let mut out = vec![0u8; 255 * 32];
        assert!(hkdf_sha256(b"s", b"k", b"i", &mut out).is_ok());
    }
}
