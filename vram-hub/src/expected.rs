//! The digest a blob's name promises, and checking a file against it.

use std::io::Read;

/// The digest a cached file must have, read from its blob's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// A Git LFS file: the SHA-256 of its content.
    Sha256([u8; 32]),
    /// A small file: its git blob id, SHA-1 of `"blob <len>\0" + content`.
    GitBlobSha1([u8; 20]),
}

impl Expected {
    /// From a blob's file name: 64 hex digits are a SHA-256, 40 a git blob id.
    #[must_use]
    pub fn from_blob_name(name: &str) -> Option<Self> {
        match name.len() {
            64 => vram_validation::hex::decode_lower(name).map(Self::Sha256),
            40 => vram_validation::hex::decode_lower(name).map(Self::GitBlobSha1),
            _ => None,
        }
    }

    /// The digest as lower-case hex (the blob's name).
    #[must_use]
    pub fn to_hex(&self) -> String {
        let bytes: &[u8] = match self {
            Self::Sha256(d) => d,
            Self::GitBlobSha1(d) => d,
        };
        vram_validation::hex::encode(bytes)
    }

    /// Checks `bytes` (a whole file, read once) against this digest.
    #[must_use]
    pub fn check_bytes(&self, bytes: &[u8]) -> FileCheck {
        let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        // Reading from a slice cannot fail, nor change length.
        check(bytes, len, *self).unwrap_or_else(|e| FileCheck::Corrupt {
            actual: e.to_string(),
        })
    }

    /// `sha256` or `git-sha1`.
    #[must_use]
    pub fn algorithm(&self) -> &'static str {
        match self {
            Self::Sha256(_) => "sha256",
            Self::GitBlobSha1(_) => "git-sha1",
        }
    }
}

/// The outcome of checking one file against its expected digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileCheck {
    /// The content hashes to the blob's name.
    Intact,
    /// It does not: `actual` is what it hashes to (same algorithm, hex).
    Corrupt {
        /// The digest the content has.
        actual: String,
    },
}

/// The git blob id of `len` bytes read from `reader`: SHA-1 of
/// `"blob <len>\0"` followed by the content.
///
/// # Errors
/// Read errors, and [`std::io::ErrorKind::UnexpectedEof`] when the reader
/// holds fewer than `len` bytes or more.
pub fn git_blob_id(mut reader: impl Read, len: u64) -> std::io::Result<[u8; 20]> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(format!("blob {len}\0").as_bytes());
    let seen = feed(&mut reader, &mut ctx)?;
    if seen != len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the file changed length while it was read",
        ));
    }
    digest_bytes(&ctx.finish())
}

/// Checks the file behind `reader` (`len` bytes) against `expected`.
///
/// # Errors
/// Read errors.
pub(crate) fn check(reader: impl Read, len: u64, expected: Expected) -> std::io::Result<FileCheck> {
    let actual = match expected {
        Expected::Sha256(_) => {
            let mut reader = reader;
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            feed(&mut reader, &mut ctx)?;
            Expected::Sha256(digest_bytes(&ctx.finish())?)
        }
        Expected::GitBlobSha1(_) => Expected::GitBlobSha1(git_blob_id(reader, len)?),
    };
    Ok(if actual == expected {
        FileCheck::Intact
    } else {
        FileCheck::Corrupt {
            actual: actual.to_hex(),
        }
    })
}

fn feed(reader: &mut impl Read, ctx: &mut ring::digest::Context) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut seen = 0u64;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(seen),
            Ok(n) => {
                ctx.update(buf.get(..n).unwrap_or_default());
                seen = seen.saturating_add(n as u64);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn digest_bytes<const N: usize>(d: &ring::digest::Digest) -> std::io::Result<[u8; N]> {
    <[u8; N]>::try_from(d.as_ref()).map_err(|_| std::io::Error::other("unexpected digest length"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_blob_ids_match_git() {
        // `printf 'hello\n' | git hash-object --stdin`
        let id = git_blob_id(&b"hello\n"[..], 6).unwrap();
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "ce013625030ba8dba906f756967f9e9ca394464a");
        // The empty blob.
        let id = git_blob_id(&b""[..], 0).unwrap();
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
        assert!(git_blob_id(&b"hello\n"[..], 7).is_err());
    }

    #[test]
    fn blob_names_give_expected_digests() {
        let sha = "a".repeat(64);
        assert!(matches!(
            Expected::from_blob_name(&sha),
            Some(Expected::Sha256(_))
        ));
        assert_eq!(Expected::from_blob_name(&sha).unwrap().to_hex(), sha);
        assert!(matches!(
            Expected::from_blob_name("ce013625030ba8dba906f756967f9e9ca394464a"),
            Some(Expected::GitBlobSha1(_))
        ));
        for bad in ["", "abc", &"A".repeat(64), &"g".repeat(40), &"a".repeat(63)] {
            assert_eq!(Expected::from_blob_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_changed_byte_is_corrupt() {
        let data = b"some weights".to_vec();
        let good = Expected::Sha256(
            <[u8; 32]>::try_from(ring::digest::digest(&ring::digest::SHA256, &data).as_ref())
                .unwrap(),
        );
        assert_eq!(check(&data[..], 12, good).unwrap(), FileCheck::Intact);
        let mut bad = data.clone();
        bad[3] ^= 1;
        assert!(matches!(
            check(&bad[..], 12, good).unwrap(),
            FileCheck::Corrupt { .. }
        ));
    }
}
