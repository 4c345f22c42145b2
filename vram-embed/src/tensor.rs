//! The seam between where weights live and the model that computes on them.
//!
//! A tensor is handed out as the workspace's one view type,
//! [`TensorView`] (name, [`Dtype`](crate::Dtype), shape and memory, as the tensor table of
//! `vram-format` describes it): from a lease on sealed memory
//! ([`crate::LeasedWeights`]) or from a file read into host memory
//! ([`crate::SafetensorsFile`]).

use vram_residency::TensorView;

use crate::EmbedError;

/// Where a model's weights come from, one named tensor at a time.
///
/// A request computes on a source's views where they lie: the views it
/// hands out are borrowed from `&self`, so nothing computed on them outlives the
/// borrow, and a source that checks something before it is handed out (a
/// verified lease on sealed device memory) covers every byte a request
/// computes on. Implementations: [`crate::SafetensorsFile`] (a file read into
/// host memory) and [`crate::LeasedWeights`] (a verified lease).
pub trait TensorSource {
    /// The tensor called `name` (safetensors naming, e.g.
    /// `encoder.layer.0.attention.self.query.weight`).
    ///
    /// # Errors
    ///
    /// [`EmbedError::MissingTensor`] when there is none of that name; a
    /// source may add its own (a failed verification).
    fn tensor(&self, name: &str) -> Result<TensorView<'_>, EmbedError>;

    /// What was verified before this source was handed out (a lease's
    /// verification), for the response line; `None` for unverified sources.
    fn lease_cost(&self) -> Option<LeaseCost> {
        None
    }
}

/// A lease's verification, as a response line reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeaseCost {
    /// The verification policy that ran (`sampled:4`, `full`).
    pub policy: String,
    /// Leaves re-read and hashed.
    pub leaves_checked: u64,
    /// Bytes re-read and hashed.
    pub bytes_checked: u64,
    /// Its wall time, in microseconds.
    pub verify_us: u64,
}

impl<T: TensorSource + ?Sized> TensorSource for &T {
    fn tensor(&self, name: &str) -> Result<TensorView<'_>, EmbedError> {
        (**self).tensor(name)
    }

    fn lease_cost(&self) -> Option<LeaseCost> {
        (**self).lease_cost()
    }
}
