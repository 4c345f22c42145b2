//! Sentence embeddings from a BERT-family model (candle, CPU) whose weights
//! come from a [`TensorSource`] for each request, never from a path.
//!
//! - [`ModelSnapshot`] reads a sentence-transformers snapshot's small files
//!   (`modules.json`, `config.json`, `tokenizer.json`, the pooling config).
//! - [`Embedder`] tokenizes, runs the forward pass on a source's
//!   [`TensorView`]s where they lie (the weight matrices are not copied:
//!   host bytes on the CPU, device memory on CUDA), pools and normalises.
//! - [`SafetensorsFile`] is a source over a safetensors file read into host
//!   memory, its header checked before anything is allocated.
//! - [`SealedWeights`] serves a model sealed in device memory: each request
//!   computes on a [`LeasedWeights`], a verified lease obtained for it.
//! - [`serve()`] answers JSON lines; a [`WeightsProvider`] hands it a fresh
//!   source per request.
//!
//! ```no_run
//! use std::path::Path;
//! use vram_embed::{Embedder, ModelSnapshot, SafetensorsFile};
//!
//! # fn main() -> Result<(), vram_embed::EmbedError> {
//! let snapshot = ModelSnapshot::open(Path::new("all-MiniLM-L6-v2"))?;
//! let embedder = Embedder::new(&snapshot)?;
//! let weights = SafetensorsFile::read(&snapshot.weights_path())?;
//! let e = embedder.embed(&weights, "A sealed model, verified before use.")?;
//! assert_eq!(e.vector.len(), embedder.dimensions());
//! # Ok(())
//! # }
//! ```

// Unsafe code is denied here and allowed in two modules: src/host.rs (the
// gemm call of the CPU forward pass, on weights read in place) and
// src/cuda.rs (feature `cuda-engine`), cuBLAS and device-to-device copies
// on leased device memory.
#![deny(unsafe_code)]

// The encoder written over `BertWeights`: what both engines compute with.
mod bert;
#[cfg(feature = "cuda-engine")]
mod cuda;
mod embedder;
mod error;
#[allow(unsafe_code)]
mod host;
mod materialise;
mod pooling;
mod safetensors_file;
mod sealed;
mod serve;
mod snapshot;
mod tensor;

#[cfg(feature = "cuda-engine")]
pub use cuda::cuda_device;
pub use embedder::{Embedder, Embedding, Timings};
pub use error::{EmbedError, ErrorClass};
pub use pooling::Pooling;
pub use safetensors_file::{SafetensorsFile, MAX_HEADER_BYTES};
pub use sealed::{LeasedWeights, SealedWeights};
pub use serve::{serve, ServeStopped, ServeSummary, WeightsProvider, MAX_REQUEST_BYTES};
pub use snapshot::{ModelSnapshot, WEIGHTS_FILE};
pub use tensor::{LeaseCost, TensorSource};
// The workspace's one element type and tensor view, by name, for sources
// and their users.
pub use vram_format::Dtype;
pub use vram_residency::TensorView;
