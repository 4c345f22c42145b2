//! Hex text forms for 32-byte values, shared by digests and seal tags; the
//! codec itself is `vram_validation::hex`, the workspace's one.

/// Implements `Debug`, `Display`, `FromStr` and hex-string serde for a
/// `struct Name(pub [u8; 32])`.
macro_rules! hex32_impls {
    ($name:ident, $what:literal) => {
        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                ::vram_validation::hex::write_lower(f, &self.0)
            }
        }

        impl ::core::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(concat!(stringify!($name), "("))?;
                ::vram_validation::hex::write_lower(f, &self.0)?;
                f.write_str(")")
            }
        }

        impl ::core::str::FromStr for $name {
            type Err = $crate::CryptoError;

            /// Parses 64 hex digits; upper case is accepted.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                ::vram_validation::hex::decode(s)
                    .map(Self)
                    .ok_or($crate::CryptoError::InvalidHex {
                        expected: 64,
                        len: s.len(),
                    })
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
