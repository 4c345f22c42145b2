//! A read-only memory map of a regular file, for digests: the bytes are
//! hashed where the page cache holds them, with no copy into a buffer first.
//!
//! This is the one place outside the CUDA backend that needs `unsafe`: the
//! operating system, not Rust, keeps a mapped file's bytes, and the compiler
//! cannot see what other processes do to the file.

#![allow(unsafe_code)]

use std::fs::File;

/// A regular file's bytes, mapped read-only.
///
/// For digests only (`vram digest`): a seal never reads through a map,
/// because it must copy and hash one and the same read of each byte (see
/// ARCHITECTURE.md, "read once"), which a map shared with the file cannot
/// promise.
///
/// What another process does to the file while it is mapped shows through:
/// a byte written meanwhile may be seen (so a digest of a file that changes
/// while it is read describes no single state of it, as with `read(2)`), and
/// a file truncated meanwhile makes the kernel kill the process with
/// `SIGBUS` when a page past the new end is read. `b3sum` and ripgrep make
/// the same trade for the same speed; callers that cannot accept it read the
/// file with positional reads instead.
pub struct MappedFile {
    map: Option<memmap2::Mmap>,
}

impl std::fmt::Debug for MappedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The address of the map says nothing useful and is not shown.
        f.debug_struct("MappedFile")
            .field("len", &self.bytes().len())
            .finish()
    }
}

impl MappedFile {
    /// Maps the whole of `file`, which must be a regular file. An empty file
    /// maps to no memory at all (an empty slice).
    ///
    /// # Errors
    /// [`std::io::ErrorKind::InvalidInput`] when `file` is not a regular file;
    /// the operating system's error when it cannot be mapped (the caller then
    /// reads it instead).
    pub fn open(file: &File) -> std::io::Result<Self> {
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "only a regular file can be mapped",
            ));
        }
        if meta.len() == 0 {
            return Ok(Self { map: None });
        }
        // SAFETY: the map is read-only (PROT_READ, MAP_SHARED) and lives no
        // longer than `Self`, which hands out only `&[u8]` borrowed from
        // itself. Its contents are the file's page cache: another process
        // writing the file changes bytes we read (a torn digest, never a
        // memory-safety problem for plain bytes), and one truncating it
        // makes a later access raise SIGBUS, which ends the process rather
        // than letting it read memory that is not the file's. Both are
        // documented on `MappedFile`; seals never use a map.
        let map = unsafe { memmap2::Mmap::map(file) }?;
        Ok(Self { map: Some(map) })
    }

    /// The mapped bytes.
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_mapped_file_holds_exactly_its_bytes() {
        let data: Vec<u8> = (0..300_001u32).map(|i| (i % 251) as u8).collect();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&data).unwrap();
        let mapped = MappedFile::open(&file).unwrap();
        assert!(mapped.bytes() == data.as_slice());
        assert_eq!(format!("{mapped:?}"), "MappedFile { len: 300001 }");
        let empty = tempfile::tempfile().unwrap();
        assert!(MappedFile::open(&empty).unwrap().bytes().is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn only_regular_files_are_mapped() {
        let dir = tempfile::tempdir().unwrap();
        let d = File::open(dir.path()).unwrap();
        let e = MappedFile::open(&d).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    }
}
