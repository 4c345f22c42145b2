//! The trait impls shared by the validated string types.

/// Implements `as_str`, `Display`, `FromStr`, `AsRef<str>`, `TryFrom<String>`,
/// `TryFrom<&str>` and `From<$ty> for String` for a `$ty(String)` whose only
/// constructor is `$ty::new(&str) -> Result<$ty, ValidationError>`.
macro_rules! validated_string {
    ($ty:ident) => {
        impl $ty {
            /// The validated text.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Consumes the value, returning the validated text.
            #[must_use]
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl ::std::str::FromStr for $ty {
            type Err = $crate::ValidationError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $ty::new(s)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $ty {
            type Error = $crate::ValidationError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                $ty::new(&s)
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = $crate::ValidationError;
            fn try_from(s: &str) -> Result<Self, Self::Error> {
                $ty::new(s)
            }
        }

        impl From<$ty> for String {
            fn from(v: $ty) -> String {
                v.0
            }
        }
    };
}

pub(crate) use validated_string;
