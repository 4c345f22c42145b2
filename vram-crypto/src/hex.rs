//! Lower-case hex for 32-byte values, shared by digests and seal tags.

use core::fmt;

use crate::CryptoError;

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Writes `bytes` as lower-case hex.
pub(crate) fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    let mut buf = [0u8; 64];
    for (pair, b) in buf.chunks_exact_mut(2).zip(bytes) {
        if let [hi, lo] = pair {
            *hi = DIGITS.get(usize::from(b >> 4)).copied().unwrap_or(b'?');
            *lo = DIGITS.get(usize::from(b & 0x0f)).copied().unwrap_or(b'?');
        }
    }
    let used = buf.get(..bytes.len().saturating_mul(2)).unwrap_or(&[]);
    f.write_str(core::str::from_utf8(used).map_err(|_| fmt::Error)?)
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => c.checked_sub(b'0'),
        b'a'..=b'f' => c.checked_sub(b'a' - 10),
        b'A'..=b'F' => c.checked_sub(b'A' - 10),
        _ => None,
    }
}

/// Parses exactly 64 hex digits (either case) into 32 bytes.
pub(crate) fn parse_32(s: &str) -> Result<[u8; 32], CryptoError> {
    let err = CryptoError::InvalidHex {
        expected: 64,
        len: s.len(),
    };
    let raw = s.as_bytes();
    if raw.len() != 64 {
        return Err(err);
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(raw.chunks_exact(2)) {
        match pair {
            [hi, lo] => match (nibble(*hi), nibble(*lo)) {
                (Some(h), Some(l)) => *o = (h << 4) | l,
                _ => return Err(err),
            },
            _ => return Err(err),
        }
    }
    Ok(out)
}

/// Implements `Debug`, `Display`, `FromStr` and hex-string serde for a
/// `struct Name(pub [u8; 32])`.
macro_rules! hex32_impls {
    ($name:ident, $what:literal) => {
        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                $crate::hex::write_hex(f, &self.0)
            }
        }

        impl ::core::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(concat!(stringify!($name), "("))?;
                $crate::hex::write_hex(f, &self.0)?;
                f.write_str(")")
            }
        }

        impl ::core::str::FromStr for $name {
            type Err = $crate::CryptoError;

            /// Parses 64 hex digits; upper case is accepted.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $crate::hex::parse_32(s).map(Self)
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl ::serde::de::Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                        f.write_str(concat!($what, " as 64 hex digits"))
                    }
                    fn visit_str<E: ::serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        v.parse().map_err(E::custom)
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}
pub(crate) use hex32_impls;
