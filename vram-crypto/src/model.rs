//! The model binding: one HMAC tag, under the seal key, over the seals of a
//! model's weight shards and the SHA-256 of each small file that changes
//! what the model computes (config, tokenizer). The weights stay in device
//! memory under their own seals; the small files stay on the host, and the
//! binding proves that the ones an engine loads are the ones sealed with
//! those weights. docs/formats.md has the encoding and a test vector.

use crate::seal::{HmacKey, SealTag, MAX_PROVENANCE_NAME_LEN};
use crate::CryptoError;

/// Domain string of a model binding (a seal message starts with
/// `vram-residency seal`, so neither can be taken for the other).
pub const MODEL_BINDING_DOMAIN: &[u8] = b"vram-residency model";

/// Model binding format version 1.
pub const MODEL_BINDING_V1: u8 = 1;

/// One small file bound to a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundFile<'a> {
    /// Its name in the snapshot (`1_Pooling/config.json`), at most
    /// [`MAX_PROVENANCE_NAME_LEN`] bytes.
    pub name: &'a str,
    /// Its length in bytes.
    pub len: u64,
    /// Its SHA-256.
    pub sha256: [u8; 32],
}

/// One weight shard bound to a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundShard<'a> {
    /// The weights file it was sealed from (`model-00001-of-00002.safetensors`),
    /// at most [`MAX_PROVENANCE_NAME_LEN`] bytes.
    pub name: &'a str,
    /// Its seal's tag. The seal already commits to the shard's bytes,
    /// position, set id, device and key.
    pub seal_tag: SealTag,
}

/// Everything a model binding commits to.
///
/// [`ModelBinding::encode`] is injective: counts and names carry u32
/// big-endian lengths, every other field has a fixed width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelBinding<'a> {
    /// The model's reference (`hf://ORG/NAME@COMMIT`, a directory).
    pub model_ref: &'a str,
    /// The weight shards, in position order.
    pub shards: &'a [BoundShard<'a>],
    /// The small files, in the order they were bound.
    pub files: &'a [BoundFile<'a>],
    /// Fingerprint of the key that signs it.
    pub key_id: [u8; 8],
}

impl ModelBinding<'_> {
    /// The canonical bytes that are signed:
    ///
    /// ```text
    /// "vram-residency model" (20 bytes) || version (u8 = 1)
    /// || len(model_ref) (u32 BE) || model_ref
    /// || shard count (u32 BE)
    /// || for each shard: len(name) (u32 BE) || name || its seal tag (32 bytes)
    /// || file count (u32 BE)
    /// || for each file: len(name) (u32 BE) || name || length (u64 BE) || SHA-256 (32 bytes)
    /// || key_id (8 bytes)
    /// ```
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let names: usize = self
            .files
            .iter()
            .map(|f| f.name.len().saturating_add(44))
            .fold(0, usize::saturating_add);
        let mut out = Vec::with_capacity(
            64usize
                .saturating_add(self.model_ref.len())
                .saturating_add(
                    self.shards
                        .iter()
                        .map(|s| s.name.len().saturating_add(36))
                        .fold(0, usize::saturating_add),
                )
                .saturating_add(names),
        );
        out.extend_from_slice(MODEL_BINDING_DOMAIN);
        out.push(MODEL_BINDING_V1);
        put_len(&mut out, self.model_ref.len());
        out.extend_from_slice(self.model_ref.as_bytes());
        put_len(&mut out, self.shards.len());
        for s in self.shards {
            put_len(&mut out, s.name.len());
            out.extend_from_slice(s.name.as_bytes());
            out.extend_from_slice(s.seal_tag.as_bytes());
        }
        put_len(&mut out, self.files.len());
        for f in self.files {
            put_len(&mut out, f.name.len());
            out.extend_from_slice(f.name.as_bytes());
            out.extend_from_slice(&f.len.to_be_bytes());
            out.extend_from_slice(&f.sha256);
        }
        out.extend_from_slice(&self.key_id);
        out
    }

    /// Refuses what the encoding cannot carry: more than `u32::MAX` shards,
    /// files or model-reference bytes; file names over
    /// [`MAX_PROVENANCE_NAME_LEN`] bytes.
    fn check(&self) -> Result<(), CryptoError> {
        let u32_max = usize::try_from(u32::MAX).unwrap_or(usize::MAX);
        let longest_name = self
            .files
            .iter()
            .map(|f| f.name.len())
            .chain(self.shards.iter().map(|s| s.name.len()))
            .max()
            .unwrap_or(0);
        for (field, len, max) in [
            ("model_ref", self.model_ref.len(), u32_max),
            ("shards", self.shards.len(), u32_max),
            ("files", self.files.len(), u32_max),
            ("name", longest_name, MAX_PROVENANCE_NAME_LEN),
        ] {
            if len > max {
                return Err(CryptoError::FieldTooLong { field, len, max });
            }
        }
        Ok(())
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // `check` refuses anything longer first.
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
}

/// Signs a model binding: HMAC-SHA256 over [`ModelBinding::encode`].
///
/// # Errors
/// [`CryptoError::FieldTooLong`] for a field the encoding cannot carry.
pub fn sign_model_binding(
    key: &HmacKey,
    binding: &ModelBinding<'_>,
) -> Result<SealTag, CryptoError> {
    binding.check()?;
    Ok(SealTag(key.sign(&binding.encode())))
}

/// Verifies a model binding's tag in constant time.
///
/// # Errors
/// [`CryptoError::SealMismatch`] when any shard seal, file, name, length,
/// digest, the key or the tag differs from what was signed;
/// [`CryptoError::FieldTooLong`] as for [`sign_model_binding`].
pub fn verify_model_binding(
    key: &HmacKey,
    binding: &ModelBinding<'_>,
    tag: &SealTag,
) -> Result<(), CryptoError> {
    binding.check()?;
    key.verify(&binding.encode(), tag.as_bytes())
        .map_err(|_| CryptoError::SealMismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> [BoundFile<'static>; 2] {
        [
            BoundFile {
                name: "config.json",
                len: 2,
                sha256: [0x11; 32],
            },
            BoundFile {
                name: "1_Pooling/config.json",
                len: 3,
                sha256: [0x22; 32],
            },
        ]
    }

    /// Every field is covered: changing any one of them breaks the tag.
    #[test]
    fn every_field_is_bound() {
        let key = HmacKey::new(&[7u8; 32]).unwrap();
        let tags = [
            BoundShard {
                name: "a.safetensors",
                seal_tag: SealTag([1; 32]),
            },
            BoundShard {
                name: "b.safetensors",
                seal_tag: SealTag([2; 32]),
            },
        ];
        let mut renamed_shard = tags;
        renamed_shard[0].name = "c.safetensors";
        let files = files();
        let b = ModelBinding {
            model_ref: "hf://org/m@c",
            shards: &tags,
            files: &files,
            key_id: [9; 8],
        };
        let tag = sign_model_binding(&key, &b).unwrap();
        verify_model_binding(&key, &b, &tag).unwrap();
        let mut swapped = tags;
        swapped.swap(0, 1);
        let mut renamed = files;
        renamed[1].name = "2_Pooling/config.json";
        let mut longer = files;
        longer[0].len = 3;
        let mut rehashed = files;
        rehashed[1].sha256[31] ^= 1;
        let one_file = &files[..1];
        let changes: [ModelBinding<'_>; 9] = [
            ModelBinding {
                model_ref: "hf://org/m@d",
                ..b
            },
            ModelBinding {
                shards: &swapped,
                ..b
            },
            ModelBinding {
                shards: &tags[..1],
                ..b
            },
            ModelBinding {
                shards: &renamed_shard,
                ..b
            },
            ModelBinding {
                files: &renamed,
                ..b
            },
            ModelBinding {
                files: &longer,
                ..b
            },
            ModelBinding {
                files: &rehashed,
                ..b
            },
            ModelBinding {
                files: one_file,
                ..b
            },
            ModelBinding {
                key_id: [8; 8],
                ..b
            },
        ];
        for (i, changed) in changes.iter().enumerate() {
            assert_eq!(
                verify_model_binding(&key, changed, &tag),
                Err(CryptoError::SealMismatch),
                "change {i}"
            );
        }
        let other = HmacKey::new(&[8u8; 32]).unwrap();
        assert_eq!(
            verify_model_binding(&other, &b, &tag),
            Err(CryptoError::SealMismatch)
        );
    }

    #[test]
    fn long_names_are_refused() {
        let key = HmacKey::new(&[7u8; 32]).unwrap();
        let name = "n".repeat(MAX_PROVENANCE_NAME_LEN + 1);
        let files = [BoundFile {
            name: &name,
            len: 0,
            sha256: [0; 32],
        }];
        let b = ModelBinding {
            model_ref: "m",
            shards: &[],
            files: &files,
            key_id: [0; 8],
        };
        assert!(matches!(
            sign_model_binding(&key, &b),
            Err(CryptoError::FieldTooLong { field: "name", .. })
        ));
        assert!(matches!(
            verify_model_binding(&key, &b, &SealTag([0; 32])),
            Err(CryptoError::FieldTooLong { .. })
        ));
        let ok = "n".repeat(MAX_PROVENANCE_NAME_LEN);
        let files = [BoundFile {
            name: &ok,
            ..files[0]
        }];
        sign_model_binding(&key, &ModelBinding { files: &files, ..b }).unwrap();
    }
}
