//! Text in, sentence embedding out: tokenizer, BERT forward pass on a
//! [`TensorSource`]'s views where they lie (`bert.rs` over `host.rs` on the
//! CPU, `cuda.rs` on CUDA), pooling, normalisation.

use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{self, BertModel};
use tokenizers::{Encoding, Tokenizer, TruncationParams};

use crate::host::InPlaceWeights;
use crate::pooling::l2_normalise;
use crate::{EmbedError, ModelSnapshot, Pooling, TensorSource};

/// One sentence embedding and what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    /// The vector (L2-normalised when the snapshot says so).
    pub vector: Vec<f32>,
    /// Tokens the text became, `[CLS]` and `[SEP]` included, after truncation.
    pub tokens: usize,
    /// Whether the text was cut to the model's `max_seq_length` (its end
    /// was not embedded).
    pub truncated: bool,
    /// Where the time went.
    pub timings: Timings,
}

/// Where one request's time went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    /// Tokenization.
    pub tokenize: Duration,
    /// Converting the weight matrices that cannot be computed on where the
    /// source keeps them (on the CPU: F16 and BF16 matrices, or F32 bytes
    /// not aligned for `f32`; nothing on CUDA, and nothing for an aligned
    /// F32 model: its matrices are read in place).
    pub materialise: Duration,
    /// Forward pass, pooling and normalisation (conversions excluded).
    pub forward: Duration,
    /// Weight matrices converted for the request.
    pub tensors: u64,
    /// Bytes of the source's views those conversions read.
    pub bytes: u64,
}

/// A snapshot's tokenizer, config, pooling and normalisation, ready to
/// embed texts on weights handed in per request. Holds no weights.
pub struct Embedder {
    config: bert::Config,
    tokenizer: Tokenizer,
    pooling: Pooling,
    normalize: bool,
    device: Device,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("hidden_size", &self.config.hidden_size)
            .field("pooling", &self.pooling)
            .field("normalize", &self.normalize)
            .finish_non_exhaustive()
    }
}

impl Embedder {
    /// Builds the tokenizer (truncating to the snapshot's `max_seq_length`,
    /// no padding: one text per request) for the CPU.
    ///
    /// # Errors
    ///
    /// [`EmbedError::Tokenizer`] when `tokenizer.json` cannot be loaded.
    pub fn new(snapshot: &ModelSnapshot) -> Result<Self, EmbedError> {
        Self::on(snapshot, Device::Cpu)
    }

    /// As [`Embedder::new`], computing on `device`: the CPU (weights read
    /// from host bytes, a lease on the mock, a file), or candle's CUDA
    /// device (`vram_embed::cuda_device`, feature `cuda-engine`), where the
    /// weights are computed on in place in the sealed device memory of a
    /// lease on that device.
    ///
    /// # Errors
    ///
    /// As [`Embedder::new`].
    pub fn on(snapshot: &ModelSnapshot, device: Device) -> Result<Self, EmbedError> {
        let tok_err = |e: tokenizers::Error| EmbedError::Tokenizer {
            reason: crate::error::shown(&e.to_string()),
        };
        let mut tokenizer = Tokenizer::from_bytes(&snapshot.tokenizer_json).map_err(tok_err)?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: snapshot.max_seq_length,
                ..TruncationParams::default()
            }))
            .map_err(tok_err)?;
        tokenizer.with_padding(None);
        Ok(Self {
            config: snapshot.config.clone(),
            tokenizer,
            pooling: snapshot.pooling,
            normalize: snapshot.normalize,
            device,
        })
    }

    /// The embedding's length.
    #[must_use]
    pub fn dimensions(&self) -> usize {
        self.config.hidden_size
    }

    /// Embeds `text` on weights taken from `weights` for this call only:
    /// the forward pass reads the source's views, and nothing computed on
    /// them outlives this call.
    ///
    /// # Errors
    ///
    /// As [`Self::embed_all`].
    pub fn embed<S: TensorSource + Sync + ?Sized>(
        &self,
        weights: &S,
        text: &str,
    ) -> Result<Embedding, EmbedError> {
        let mut all = self.embed_all(weights, &[text])?;
        all.pop().ok_or_else(|| EmbedError::Model {
            reason: "no embedding was computed".into(),
        })
    }

    /// Embeds every text of one request on weights taken from `weights`:
    /// each weight matrix is read where the source keeps it (host bytes of
    /// a lease on the mock or of a file, or device memory on CUDA); a
    /// matrix that cannot be (F16 or BF16 on the CPU, or F32 bytes not
    /// aligned for `f32`) is converted once for the request, used for every
    /// text, and dropped before this returns. The conversions' figures
    /// (`materialise`, `tensors`, `bytes`) are reported on the first
    /// embedding and are zero on the others, so that their sum is the
    /// request's cost.
    ///
    /// # Errors
    ///
    /// The first error the source or the checks reported ([`EmbedError::MissingTensor`], [`EmbedError::TensorShape`],
    /// [`EmbedError::TensorSize`], [`EmbedError::UnsupportedDtype`], or the
    /// source's own), naming the tensor; [`EmbedError::Tokenizer`] and
    /// [`EmbedError::Model`] otherwise. A text that cannot be tokenized
    /// fails the request before any weight is read.
    pub fn embed_all<S: TensorSource + Sync + ?Sized, T: AsRef<str>>(
        &self,
        weights: &S,
        texts: &[T],
    ) -> Result<Vec<Embedding>, EmbedError> {
        let encodings = texts
            .iter()
            .map(|text| {
                let start = Instant::now();
                self.encode(text.as_ref()).map(|e| (e, start.elapsed()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if encodings.is_empty() {
            return Ok(Vec::new());
        }
        #[cfg(feature = "cuda-engine")]
        if self.device.is_cuda() {
            return self.embed_all_cuda(weights, &encodings);
        }
        // On the CPU: the forward pass of `bert.rs` on the source's host
        // bytes in place (`host.rs`); weights that cannot be read as f32
        // where they lie are converted once for the request, and counted.
        let host = InPlaceWeights::new(weights);
        let prefix = crate::bert::prefix(weights, &self.config);
        self.embed_in_place(&host, &prefix, &encodings, || host.converted())
    }

    /// The forward pass of `bert.rs` over `weights` for each encoding,
    /// pooled; `converted` says what converting weights has cost so far
    /// (tensors, bytes, time), reported on the text whose pass did it, so
    /// that the figures add up to the request's.
    fn embed_in_place<W: crate::bert::BertWeights>(
        &self,
        weights: &W,
        prefix: &str,
        encodings: &[(Encoding, Duration)],
        converted: impl Fn() -> (u64, u64, Duration),
    ) -> Result<Vec<Embedding>, EmbedError> {
        let mut counted = (0, 0, Duration::ZERO);
        encodings
            .iter()
            .map(|(encoding, tokenize)| {
                let start = Instant::now();
                let hidden = crate::bert::forward(
                    weights,
                    &self.config,
                    prefix,
                    encoding.get_ids(),
                    encoding.get_type_ids(),
                )?;
                let mut embedding = self.pool(&hidden, encoding, start)?;
                let (tensors, bytes, spent) = converted();
                let converting = spent.saturating_sub(counted.2);
                embedding.timings.tensors = tensors.saturating_sub(counted.0);
                embedding.timings.bytes = bytes.saturating_sub(counted.1);
                embedding.timings.materialise = converting;
                embedding.timings.forward = embedding.timings.forward.saturating_sub(converting);
                counted = (tensors, bytes, spent);
                embedding.timings.tokenize = *tokenize;
                Ok(embedding)
            })
            .collect()
    }

    /// Embeds `text` with a model built from any candle `VarBuilder`: the
    /// same tokenizer, forward pass, pooling and normalisation as
    /// [`Self::embed`]. For comparing with candle's own loading of a file;
    /// a server uses [`Self::embed`].
    ///
    /// # Errors
    ///
    /// [`EmbedError::Model`] when the model cannot be built or run;
    /// [`EmbedError::Tokenizer`].
    pub fn embed_with_var_builder(
        &self,
        vb: VarBuilder<'_>,
        text: &str,
    ) -> Result<Embedding, EmbedError> {
        let encoding = self.encode(text)?;
        let model = BertModel::load(vb, &self.config).map_err(|e| EmbedError::model(&e))?;
        self.run(&model, &encoding)
    }

    /// On CUDA: the forward pass of `bert.rs` over the lease's device
    /// memory, in place ([`crate::cuda`]); the weights' view borrowed for the
    /// request, the device synchronised before it returns.
    #[cfg(feature = "cuda-engine")]
    fn embed_all_cuda<S: TensorSource + Sync + ?Sized>(
        &self,
        weights: &S,
        encodings: &[(Encoding, Duration)],
    ) -> Result<Vec<Embedding>, EmbedError> {
        let cuda = crate::cuda::CudaWeights::new(weights, &self.device)?;
        let prefix = crate::bert::prefix(weights, &self.config);
        // Nothing is converted on CUDA: every weight is read in place.
        self.embed_in_place(&cuda, &prefix, encodings, || (0, 0, Duration::ZERO))
    }

    fn encode(&self, text: &str) -> Result<Encoding, EmbedError> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| EmbedError::Tokenizer {
                reason: crate::error::shown(&e.to_string()),
            })?;
        // A vocabulary larger than the model's embedding table would index
        // past it; refuse instead.
        let vocab = self.config.vocab_size;
        if let Some(id) = encoding
            .get_ids()
            .iter()
            .find(|id| usize::try_from(**id).map_or(true, |i| i >= vocab))
        {
            return Err(EmbedError::Tokenizer {
                reason: format!("token id {id} is outside the model's vocabulary of {vocab}"),
            });
        }
        Ok(encoding)
    }

    fn run(&self, model: &BertModel, encoding: &Encoding) -> Result<Embedding, EmbedError> {
        let start = Instant::now();
        let model_err = |e: candle_core::Error| EmbedError::model(&e);
        let row = |v: &[u32]| Tensor::new(v, &self.device).and_then(|t| t.unsqueeze(0));
        let ids = row(encoding.get_ids()).map_err(model_err)?;
        let type_ids = row(encoding.get_type_ids()).map_err(model_err)?;
        let mask = row(encoding.get_attention_mask()).map_err(model_err)?;
        let hidden = model
            .forward(&ids, &type_ids, Some(&mask))
            .map_err(model_err)?;
        self.pool(&hidden, encoding, start)
    }

    /// Pooling and normalisation of the encoder's `hidden` states for
    /// `encoding`, the embedding with its forward time since `start`.
    fn pool(
        &self,
        hidden: &Tensor,
        encoding: &Encoding,
        start: Instant,
    ) -> Result<Embedding, EmbedError> {
        let model_err = |e: candle_core::Error| EmbedError::model(&e);
        let mask = Tensor::new(encoding.get_attention_mask(), &self.device)
            .and_then(|t| t.unsqueeze(0))
            .map_err(model_err)?;
        let mut pooled = self.pooling.apply(hidden, &mask)?;
        if self.normalize {
            pooled = l2_normalise(&pooled)?;
        }
        let vector = pooled
            .squeeze(0)
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(model_err)?;
        Ok(Embedding {
            vector,
            tokens: encoding.get_ids().len(),
            // The tokenizer puts what truncation cut off into the
            // overflowing encodings.
            truncated: !encoding.get_overflowing().is_empty(),
            timings: Timings {
                forward: start.elapsed(),
                ..Timings::default()
            },
        })
    }
}
