//! What a caller asks to seal: the request, and where the bytes come from.

use crate::Provenance;
use std::io::Read;
use vram_validation::{ModelRef, Sha256Hex, ShardId, ShardPosition};

/// What to seal, beyond the bytes.
#[derive(Debug, Clone)]
pub struct SealRequest {
    /// Shard identifier; `None` generates an opaque random 128-bit id.
    pub shard_id: Option<ShardId>,
    /// Where the model came from.
    pub model_ref: ModelRef,
    /// Target device index.
    pub gpu_device: u32,
    /// Position in a tensor-parallel set.
    pub position: ShardPosition,
    /// Plain SHA-256 published by a model catalog; checked in the same pass.
    pub expected_sha256: Option<Sha256Hex>,
    /// Also compute the plain SHA-256 when none is expected (for reporting).
    pub compute_sha256: bool,
    /// The tensor-parallel set this shard belongs to; `None` draws a fresh
    /// random id (a set of one). [`SealRequest::for_set`] gives every part
    /// one id; shards sealed apart (by several processes) share a set by
    /// passing the same id.
    pub set_id: Option<[u8; 16]>,
    /// Which signed model, and which file of it, the caller checked these
    /// bytes against before sealing (a publisher's signature it verified).
    /// `Some` binds it into the seal (format version 3) and the shard's
    /// handle; `None` (the default) seals as version 2.
    pub provenance: Option<Provenance>,
}

impl SealRequest {
    /// A request for `model_ref` on `gpu_device`, single shard, generated id.
    pub fn new(model_ref: ModelRef, gpu_device: u32) -> Self {
        Self {
            shard_id: None,
            model_ref,
            gpu_device,
            position: ShardPosition::SINGLE,
            expected_sha256: None,
            compute_sha256: false,
            set_id: None,
            provenance: None,
        }
    }

    /// A request for bytes known by no other name (model reference
    /// `inline:bytes`) on `gpu_device`, single shard, generated id: the
    /// original crate's `seal_model(bytes, device)`.
    ///
    /// # Errors
    /// None in practice: the reference is a constant that validates.
    pub fn inline(gpu_device: u32) -> Result<Self, crate::VramError> {
        Ok(Self::new(ModelRef::new("inline:bytes")?, gpu_device))
    }

    /// Whether the seal computes a plain whole-model SHA-256 (asked for, or
    /// needed to check the expected one): decided here, once per seal.
    pub(crate) fn wants_plain_sha256(&self) -> bool {
        self.expected_sha256.is_some() || self.compute_sha256
    }
}

/// Where the bytes of one shard come from, for
/// [`VramManager::seal`](crate::VramManager::seal).
pub enum SealSource<'a> {
    /// Bytes already in host memory (the borrow keeps them unchanged while
    /// they are sealed).
    Bytes(&'a [u8]),
    /// A regular file, from its start to its length at the time of the call.
    ///
    /// On a device that lends its memory (the mock), and when no plain
    /// SHA-256 is asked for, every core reads its own range of the file with
    /// positional reads straight into the device memory and hashes it there.
    /// Otherwise the file is read in order through the staging buffers, each
    /// chunk filled by several threads' positional reads. The file's cursor
    /// is neither used nor moved (on Unix). The file must not change while it
    /// is sealed; a change of length is detected.
    File {
        /// The open file.
        file: &'a std::fs::File,
        /// Called with the number of bytes of each piece read (from several
        /// threads at once).
        progress: Option<&'a (dyn Fn(u64) + Sync)>,
    },
    /// Exactly `len` bytes of a reader, streamed through two bounded host
    /// staging buffers: host memory stays O(staging), not O(model). Reading
    /// chunk N+1 overlaps copying and hashing chunk N.
    Reader {
        /// The reader.
        reader: &'a mut (dyn Read + Send),
        /// Bytes it must yield, no more and no fewer.
        len: u64,
    },
}

impl<'a> SealSource<'a> {
    /// A whole regular file, without progress reports.
    pub fn file(file: &'a std::fs::File) -> Self {
        Self::File {
            file,
            progress: None,
        }
    }
}

impl std::fmt::Debug for SealSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bytes(b) => f.debug_tuple("Bytes").field(&b.len()).finish(),
            Self::File { progress, .. } => f
                .debug_struct("File")
                .field("progress", &progress.is_some())
                .finish_non_exhaustive(),
            Self::Reader { len, .. } => f
                .debug_struct("Reader")
                .field("len", len)
                .finish_non_exhaustive(),
        }
    }
}
