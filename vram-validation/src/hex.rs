//! The workspace's one hex codec: lower-case out, fixed-length arrays in.
//!
//! It lives on the lowest floor because the lowest crates need it:
//! [`Sha256Hex`](crate::Sha256Hex) here, digests and seal tags in
//! `vram-crypto`, key ids in `vram-secrets`, record hashes in `vram-audit`.
//! Decoding always names the length it wants (`N` bytes, `2 * N` digits), so a
//! caller never has to check a length of its own, and says whether upper case
//! is accepted: [`decode`] reads either case (user input: `--expect-sha256`,
//! key ids typed by hand), [`decode_lower`] only the canonical spelling (what
//! this workspace wrote itself and compares as text: audit records, handles).
//!
//! ```
//! use vram_validation::hex;
//! assert_eq!(hex::encode(&[0x00, 0xab, 0xff]), "00abff");
//! assert_eq!(hex::decode::<2>("ABcd"), Some([0xab, 0xcd]));
//! assert_eq!(hex::decode_lower::<2>("ABcd"), None);
//! assert_eq!(hex::decode::<2>("abc"), None);
//! ```

use core::fmt;

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// The two lower-case digits of one byte.
fn digits(b: u8) -> [u8; 2] {
    let at = |n: u8| DIGITS.get(usize::from(n)).copied().unwrap_or(b'0');
    [at(b >> 4), at(b & 0x0f)]
}

/// `bytes` as lower-case hex, two digits a byte.
#[must_use]
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().saturating_mul(2));
    for &b in bytes {
        for d in digits(b) {
            out.push(char::from(d));
        }
    }
    out
}

/// Writes `bytes` as lower-case hex into `out` (a `Display` impl's formatter)
/// without allocating.
///
/// # Errors
///
/// Whatever `out` returns.
pub fn write_lower<W: fmt::Write + ?Sized>(out: &mut W, bytes: &[u8]) -> fmt::Result {
    let mut buf = [0u8; 64];
    for chunk in bytes.chunks(buf.len() / 2) {
        for (pair, &b) in buf.chunks_exact_mut(2).zip(chunk) {
            pair.copy_from_slice(&digits(b));
        }
        let used = buf.get(..chunk.len().saturating_mul(2)).unwrap_or(&[]);
        out.write_str(core::str::from_utf8(used).map_err(|_| fmt::Error)?)?;
    }
    Ok(())
}

/// The value of one hex digit of either case.
pub(crate) fn digit_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => c.checked_sub(b'0'),
        b'a'..=b'f' => c.checked_sub(b'a' - 10),
        b'A'..=b'F' => c.checked_sub(b'A' - 10),
        _ => None,
    }
}

fn decode_with<const N: usize>(text: &[u8], digit: fn(u8) -> Option<u8>) -> Option<[u8; N]> {
    if text.len() != N.checked_mul(2)? {
        return None;
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let [hi, lo] = pair else { return None };
        *o = (digit(*hi)? << 4) | digit(*lo)?;
    }
    Some(out)
}

/// Exactly `2 * N` hex digits of either case as `N` bytes; `None` for any
/// other length or any other character (no sign, no `0x`, no spaces).
#[must_use]
pub fn decode<const N: usize>(text: impl AsRef<[u8]>) -> Option<[u8; N]> {
    decode_with(text.as_ref(), digit_value)
}

/// Like [`decode`], but only the canonical lower-case spelling: text this
/// workspace wrote and compares as text, where `AB` and `ab` must not both
/// be accepted.
#[must_use]
pub fn decode_lower<const N: usize>(text: impl AsRef<[u8]>) -> Option<[u8; N]> {
    decode_with(text.as_ref(), |c| {
        if c.is_ascii_uppercase() {
            None
        } else {
            digit_value(c)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        let text = encode(&all);
        assert_eq!(text.len(), 512);
        assert_eq!(decode::<256>(&text).map(|a| a.to_vec()), Some(all.clone()));
        assert_eq!(
            decode_lower::<256>(&text).map(|a| a.to_vec()),
            Some(all.clone())
        );
        let mut written = String::new();
        write_lower(&mut written, &all).unwrap();
        assert_eq!(written, text);
        let manual: String = all.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(text, manual);
    }

    #[test]
    fn refuses_wrong_lengths_signs_and_foreign_characters() {
        assert_eq!(decode::<1>(""), None);
        assert_eq!(decode::<1>("a"), None);
        assert_eq!(decode::<1>("abc"), None);
        // `u8::from_str_radix` would read "+f" as 15.
        assert_eq!(decode::<1>("+f"), None);
        assert_eq!(decode::<1>("0x"), None);
        assert_eq!(decode::<1>("g0"), None);
        assert_eq!(decode::<1>(" 0"), None);
        assert_eq!(decode::<1>("é"), None);
        assert_eq!(decode::<0>(""), Some([]));
        assert_eq!(decode::<1>("Ff"), Some([0xff]));
        assert_eq!(decode_lower::<1>("Ff"), None);
        assert_eq!(decode_lower::<1>("ff"), Some([0xff]));
    }
}
