//! The llama forward pass over a verified lease: [`LlamaModel`] is loaded
//! once (header, hyperparameters, tensor table, rotary tables);
//! [`LlamaModel::start`] takes a lease for one request and builds that
//! request's [`RequestModel`], whose quantized weights read the sealed blocks
//! in place. The maths is candle-transformers 0.11.1's `quantized_llama`
//! (RMS norm, interleaved RoPE, grouped-query attention, SiLU-gated MLP,
//! tied output head when `output.weight` is absent), computed as llama.cpp's
//! CPU build computes it where the two differ: K and V rounded to f16 as
//! llama.cpp's f16 KV cache rounds them (Q and the attention probabilities
//! too, for the attention products), RMS norm summed in f64, RoPE angles as
//! ggml's running product.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::quantized::QTensor;
use candle_core::{DType, Device, IndexOp, Tensor};
use vram_residency::{
    LeaseHandle, LeasePolicy, SealedModel, SealedShard, SharedLease, SharedModelLease, VramError,
    VramManager,
};

use crate::gguf::{self, LlamaConfig, Metadata, TensorEntry};
use crate::weights::{LeasedBlocks, LeasedLinear};
use crate::LlmError;

/// What a GGUF model was sealed as.
#[derive(Debug, Clone)]
pub enum GgufSource {
    /// One GGUF file sealed as one shard (`VramManager::seal` from a file).
    Shard(Arc<SealedShard>),
    /// A sealed model: one GGUF file, or the parts of a model split by
    /// llama.cpp's `gguf-split` (`NAME-00001-of-0000N.gguf`, sealed as one
    /// set in part order), computed on as one.
    Model(Arc<SealedModel>),
}

/// A request's lease, which ends (and with it every weight built over it)
/// when the request's model is dropped.
#[derive(Debug)]
enum RequestLease {
    Shard(SharedLease),
    Model(SharedModelLease),
}

impl RequestLease {
    /// The lease's handle on each shard, in part order.
    fn handles(&self) -> Result<Vec<LeaseHandle>, LlmError> {
        let handles = match self {
            Self::Shard(l) => vec![l.handle()],
            Self::Model(l) => l.handles().to_vec(),
        };
        if handles.is_empty() {
            return Err(LlmError::Metadata("the sealed model holds no shard".into()));
        }
        Ok(handles)
    }

    fn verification(&self) -> Duration {
        match self {
            Self::Shard(l) => l.verification().elapsed,
            Self::Model(l) => l.verification_cost().2,
        }
    }
}

fn compute(e: &candle_core::Error) -> LlmError {
    LlmError::Compute(e.to_string())
}

/// Names of the tensors of block `i`, in the GGUF's llama naming.
fn layer_names(i: usize) -> [String; 9] {
    [
        format!("blk.{i}.attn_norm.weight"),
        format!("blk.{i}.attn_q.weight"),
        format!("blk.{i}.attn_k.weight"),
        format!("blk.{i}.attn_v.weight"),
        format!("blk.{i}.attn_output.weight"),
        format!("blk.{i}.ffn_norm.weight"),
        format!("blk.{i}.ffn_gate.weight"),
        format!("blk.{i}.ffn_up.weight"),
        format!("blk.{i}.ffn_down.weight"),
    ]
}

/// A llama GGUF model sealed in device memory, loaded once and shared by
/// requests; each request computes through its own verified lease.
#[derive(Debug)]
pub struct LlamaModel {
    manager: Arc<VramManager>,
    source: GgufSource,
    policy: LeasePolicy,
    config: LlamaConfig,
    metadata: Metadata,
    tensors: HashMap<String, TensorEntry>,
    vocab_size: usize,
    cos: Tensor,
    sin: Tensor,
    /// Where requests compute: the CPU (leases with host bytes: the mock)
    /// or candle's CUDA device (feature `cuda-engine`; leases with device
    /// addresses on the same device).
    device: Device,
}

impl LlamaModel {
    /// Loads the model: a full verification of the sealed bytes, then the
    /// GGUF header read from them, the hyperparameters and every tensor the
    /// architecture needs checked (present, supported type, shape, in range).
    /// Requests lease with `policy`.
    ///
    /// # Errors
    /// [`LlmError::Vram`] when the lease is refused (an integrity failure);
    /// [`LlmError::Metadata`] naming the key or tensor that is missing or
    /// unusable.
    pub fn load(
        manager: Arc<VramManager>,
        source: GgufSource,
        policy: LeasePolicy,
    ) -> Result<Self, LlmError> {
        Self::load_on(manager, source, policy, Device::Cpu)
    }

    /// As [`LlamaModel::load`], computing on `device`: the CPU for a shard in
    /// host memory (the mock), candle's CUDA device (built with
    /// `vram_llm::cuda_device`, feature `cuda-engine`) for a shard sealed on
    /// that CUDA device. A shard that is not where `device` computes is
    /// refused here, at load, with [`LlmError::Engine`].
    ///
    /// # Errors
    /// As [`LlamaModel::load`]; [`LlmError::Engine`] for a device that cannot
    /// reach the sealed memory.
    pub fn load_on(
        manager: Arc<VramManager>,
        source: GgufSource,
        policy: LeasePolicy,
        device: Device,
    ) -> Result<Self, LlmError> {
        let lease = lease(&manager, &source, LeasePolicy::Full)?;
        let handles = lease.handles()?;
        // Each part's header as the lease read it (seal-checked leaves, the
        // one GGUF reader's verdict), not parsed again here.
        let parts = handles
            .iter()
            .map(|handle| {
                check_device(handle, &device)?;
                handle
                    .with_tensors(|t| t.gguf().map(gguf::Header::of))
                    .map_err(|e| match e {
                        VramError::NotSafetensors { .. } => {
                            LlmError::Metadata(format!("not a readable GGUF header: {e}"))
                        }
                        other => LlmError::Vram(other),
                    })?
                    .ok_or_else(|| {
                        LlmError::Metadata(
                            "the sealed file is a safetensors file, not a GGUF file".into(),
                        )
                    })?
            })
            .collect::<Result<Vec<_>, LlmError>>()?;
        let header = gguf::Header::of_parts(parts)?;
        drop(lease);
        let config = LlamaConfig::from_metadata(&header.metadata)?;
        let vocab_size = check_tensors(&config, &header.tensors)?;
        let (cos, sin) = rotary_tables(&config)
            .and_then(|(cos, sin)| Ok((cos.to_device(&device)?, sin.to_device(&device)?)))
            .map_err(|e| compute(&e))?;
        tracing::info!(
            layers = config.block_count,
            dim = config.embedding_length,
            vocab = vocab_size,
            context = config.context_length,
            "llama model loaded from sealed memory"
        );
        Ok(Self {
            manager,
            source,
            policy,
            config,
            metadata: header.metadata,
            tensors: header.tensors,
            vocab_size,
            cos,
            sin,
            device,
        })
    }

    /// The GGUF metadata (tokenizer, chat template, hyperparameters), as read
    /// from the sealed, verified header.
    #[must_use]
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The hyperparameters.
    #[must_use]
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Context length in tokens.
    #[must_use]
    pub fn context_length(&self) -> u32 {
        self.config.context_length
    }

    /// Vocabulary size (rows of the token embedding; length of the logits).
    #[must_use]
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Starts a request: a lease verified under the model's policy, and the
    /// request's model over it (weights read in place, norms copied, an empty
    /// KV cache). Returns it with the time the lease's verification took.
    ///
    /// # Errors
    /// [`LlmError::Vram`] when the lease is refused (the sealed bytes no
    /// longer match their seal); [`LlmError::Compute`] otherwise.
    pub fn start(&self) -> Result<(RequestModel<'_>, Duration), LlmError> {
        let lease = lease(&self.manager, &self.source, self.policy)?;
        let verification = lease.verification();
        let handles = lease.handles()?;
        let copy_started = Instant::now();
        let blocks = |name: &str| -> Result<Arc<LeasedBlocks>, LlmError> {
            let entry = self
                .tensors
                .get(name)
                .ok_or_else(|| LlmError::Metadata(format!("tensor {name} is missing")))?;
            let handle = handles.get(entry.shard).ok_or_else(|| {
                LlmError::Metadata(format!(
                    "tensor {name} names a part the model does not have"
                ))
            })?;
            Ok(LeasedBlocks::new(handle.clone(), name, entry.clone()))
        };
        let dim = self.config.embedding_length;
        let norm = |name: &str| -> Result<Tensor, LlmError> {
            let blocks = blocks(name)?;
            #[cfg(feature = "cuda-engine")]
            if let Device::Cuda(device) = &self.device {
                let memory = blocks.device_memory(device)?;
                return crate::cuda::norm(memory, blocks.dtype(), dim, device);
            }
            let values = blocks.to_f32()?;
            Tensor::from_vec(values, dim, &Device::Cpu).map_err(|e| compute(&e))
        };
        let linear = |name: &str| LeasedLinear::new(blocks(name)?);
        let mut norms_copied = Duration::ZERO;
        let mut layers = Vec::with_capacity(self.config.block_count);
        for i in 0..self.config.block_count {
            let [attn_norm, q, k, v, o, ffn_norm, gate, up, down] = layer_names(i);
            let t = Instant::now();
            let attention_norm = norm(&attn_norm)?;
            let ffn_norm = norm(&ffn_norm)?;
            norms_copied = norms_copied.saturating_add(t.elapsed());
            layers.push(Layer {
                attention_norm,
                wq: linear(&q)?,
                wk: linear(&k)?,
                wv: linear(&v)?,
                wo: linear(&o)?,
                ffn_norm,
                w1: linear(&gate)?,
                w3: linear(&up)?,
                w2: linear(&down)?,
                kv_cache: None,
            });
        }
        let t = Instant::now();
        let output_norm = norm("output_norm.weight")?;
        norms_copied = norms_copied.saturating_add(t.elapsed());
        let embedding_blocks = blocks("token_embd.weight")?;
        let token_embedding = if self.device.is_cpu() {
            TokenEmbedding::Host(Box::new(
                embedding_blocks
                    .qtensor()
                    .map_err(|e| LlmError::Compute(e.to_string()))?,
            ))
        } else {
            TokenEmbedding::Device(Arc::clone(&embedding_blocks))
        };
        let output = if self.tensors.contains_key("output.weight") {
            linear("output.weight")?
        } else {
            // Tied head: a matmul over the embedding's own leased blocks.
            LeasedLinear::new(embedding_blocks)?
        };
        let build = copy_started.elapsed();
        tracing::debug!(
            lease_verification_us = verification.as_micros(),
            build_us = build.as_micros(),
            norms_copied_us = norms_copied.as_micros(),
            "request model built over the lease"
        );
        Ok((
            RequestModel {
                model: self,
                token_embedding,
                layers,
                output_norm,
                output,
                position: 0,
                norms_copied,
                build,
                lease,
            },
            verification,
        ))
    }
}

fn lease(
    manager: &VramManager,
    source: &GgufSource,
    policy: LeasePolicy,
) -> Result<RequestLease, LlmError> {
    Ok(match source {
        GgufSource::Shard(shard) => RequestLease::Shard(manager.lease_shared(shard, policy)?),
        GgufSource::Model(model) => RequestLease::Model(manager.lease_model_shared(model, policy)?),
    })
}

/// Refuses a lease whose memory `device` cannot compute on: host bytes for
/// the CPU, a device address on the same CUDA device for CUDA.
fn check_device(handle: &LeaseHandle, device: &Device) -> Result<(), LlmError> {
    let (host, cuda) = handle.with_memory(|m| match m {
        vram_residency::MemoryAccess::Host(_) => (true, None),
        vram_residency::MemoryAccess::Device(d) => (false, Some(d.device())),
        _ => (false, None),
    })?;
    match (device, host, cuda) {
        (Device::Cpu, true, _) => Ok(()),
        (Device::Cpu, false, _) => Err(LlmError::Engine(
            "the model is sealed in GPU memory, which the CPU engine cannot read; build the \
             server with the cuda-engine feature (cargo xtask gpu)"
                .into(),
        )),
        #[cfg(feature = "cuda-engine")]
        (Device::Cuda(d), false, Some(ordinal)) => {
            let computes_on = d.cuda_stream().context().ordinal();
            if usize::try_from(ordinal).ok() == Some(computes_on) {
                Ok(())
            } else {
                Err(LlmError::Engine(format!(
                    "the model is sealed on CUDA device {ordinal}, and the engine computes on \
                     CUDA device {computes_on}"
                )))
            }
        }
        _ => Err(LlmError::Engine(format!(
            "the engine computes on {device:?}, and the model is sealed in {} memory it cannot \
             reach",
            if host { "host" } else { "device" }
        ))),
    }
}

/// Checks every tensor the architecture needs; returns the vocabulary size.
fn check_tensors(
    config: &LlamaConfig,
    tensors: &HashMap<String, TensorEntry>,
) -> Result<usize, LlmError> {
    let dim = config.embedding_length;
    let kv_dim = config
        .head_dim
        .checked_mul(config.head_count_kv)
        .ok_or_else(|| LlmError::Metadata("head_count_kv overflows".into()))?;
    let find = |name: &str| {
        tensors
            .get(name)
            .ok_or_else(|| LlmError::Metadata(format!("tensor {name} is missing")))
    };
    let expect = |name: &str, dims: &[usize]| -> Result<(), LlmError> {
        let e = find(name)?;
        if e.dims != dims {
            return Err(LlmError::Metadata(format!(
                "tensor {name} has shape {:?}, expected {dims:?}",
                e.dims
            )));
        }
        Ok(())
    };
    let norm = |name: &str| -> Result<(), LlmError> {
        expect(name, &[dim])?;
        let e = find(name)?;
        if !matches!(
            e.dtype,
            candle_core::quantized::GgmlDType::F32 | candle_core::quantized::GgmlDType::F16
        ) {
            return Err(LlmError::Metadata(format!(
                "tensor {name} is {:?}; a norm weight must be F32 or F16",
                e.dtype
            )));
        }
        Ok(())
    };
    let embd = find("token_embd.weight")?;
    let vocab = match *embd.dims.as_slice() {
        [vocab, d] if d == dim && vocab > 0 => vocab,
        _ => {
            return Err(LlmError::Metadata(format!(
                "tensor token_embd.weight has shape {:?}, expected [vocab, {dim}]",
                embd.dims
            )))
        }
    };
    let ffn = match find("blk.0.ffn_gate.weight")?.dims.as_slice() {
        [ffn, d] if *d == dim => *ffn,
        other => {
            return Err(LlmError::Metadata(format!(
                "tensor blk.0.ffn_gate.weight has shape {other:?}, expected [ffn, {dim}]"
            )))
        }
    };
    norm("output_norm.weight")?;
    if tensors.contains_key("output.weight") {
        expect("output.weight", &[vocab, dim])?;
    }
    for i in 0..config.block_count {
        let [attn_norm, q, k, v, o, ffn_norm, gate, up, down] = layer_names(i);
        norm(&attn_norm)?;
        norm(&ffn_norm)?;
        expect(&q, &[dim, dim])?;
        expect(&k, &[kv_dim, dim])?;
        expect(&v, &[kv_dim, dim])?;
        expect(&o, &[dim, dim])?;
        expect(&gate, &[ffn, dim])?;
        expect(&up, &[ffn, dim])?;
        expect(&down, &[dim, ffn])?;
    }
    Ok(vocab)
}

/// cos and sin of every position's rotation, `[context, head_dim / 2]`,
/// computed as ggml's CPU RoPE computes them: `theta_scale = base^(-2 / d)`
/// in f32, each position's angles a running product of it.
fn rotary_tables(config: &LlamaConfig) -> candle_core::Result<(Tensor, Tensor)> {
    let half = config.head_dim / 2;
    #[allow(clippy::cast_precision_loss)]
    let theta_scale = config.rope_freq_base.powf(-2.0 / config.head_dim as f32);
    let positions = config.context_length as usize;
    let len = positions
        .checked_mul(half)
        .ok_or_else(|| candle_core::Error::msg("rotary tables: context too long"))?;
    let mut cos = Vec::with_capacity(len);
    let mut sin = Vec::with_capacity(len);
    for p in 0..config.context_length {
        #[allow(clippy::cast_precision_loss)]
        let mut theta = p as f32;
        for _ in 0..half {
            cos.push(theta.cos());
            sin.push(theta.sin());
            theta *= theta_scale;
        }
    }
    Ok((
        Tensor::from_vec(cos, (positions, half), &Device::Cpu)?,
        Tensor::from_vec(sin, (positions, half), &Device::Cpu)?,
    ))
}

#[derive(Debug)]
struct Layer {
    attention_norm: Tensor,
    wq: LeasedLinear,
    wk: LeasedLinear,
    wv: LeasedLinear,
    wo: LeasedLinear,
    ffn_norm: Tensor,
    w1: LeasedLinear,
    w3: LeasedLinear,
    w2: LeasedLinear,
    kv_cache: Option<(Tensor, Tensor)>,
}

/// The token embedding: a `QTensor` over the leased blocks on the CPU; on
/// CUDA the leased table itself, whose rows a kernel gathers.
#[derive(Debug)]
enum TokenEmbedding {
    Host(Box<QTensor>),
    #[cfg_attr(not(feature = "cuda-engine"), allow(dead_code))]
    Device(Arc<LeasedBlocks>),
}

/// One request's model: weights over the request's lease, its own KV cache.
/// Dropping it ends the lease; a weight kept past it reads nothing.
#[derive(Debug)]
pub struct RequestModel<'m> {
    model: &'m LlamaModel,
    token_embedding: TokenEmbedding,
    layers: Vec<Layer>,
    output_norm: Tensor,
    output: LeasedLinear,
    position: usize,
    norms_copied: Duration,
    build: Duration,
    // Last: the weights above go before the lease ends (either order is
    // safe, each access checks the lease).
    lease: RequestLease,
}

impl RequestModel<'_> {
    /// Time spent copying the (F32) norm weights out of the lease for this
    /// request: the only per-request conversion of weights.
    #[must_use]
    pub fn norms_copied(&self) -> Duration {
        self.norms_copied
    }

    /// Time spent building this request's model (norms included), lease
    /// verification excluded.
    #[must_use]
    pub fn build_time(&self) -> Duration {
        self.build
    }

    /// Runs `tokens` (the prompt, or the next token) at `position` (the
    /// number of tokens already run in this request; 0 starts over) and
    /// returns the logits of the last token.
    ///
    /// # Errors
    /// [`LlmError::InvalidRequest`] for no tokens, a position that is not the
    /// request's, or a token past the vocabulary; [`LlmError::PromptTooLong`]
    /// past the context; [`LlmError::Vram`] (`LeaseEnded`) when the lease has
    /// ended; [`LlmError::Compute`] for a kernel failure.
    pub fn forward(&mut self, tokens: &[u32], position: usize) -> Result<Vec<f32>, LlmError> {
        if tokens.is_empty() {
            return Err(LlmError::InvalidRequest("no tokens to run".into()));
        }
        if position != 0 && position != self.position {
            return Err(LlmError::InvalidRequest(format!(
                "position {position}: this request has run {} tokens",
                self.position
            )));
        }
        let context = self.model.config.context_length;
        let end = position.checked_add(tokens.len());
        if end.is_none_or(|e| e > context as usize) {
            return Err(LlmError::PromptTooLong {
                tokens: u32::try_from(end.unwrap_or(usize::MAX)).unwrap_or(u32::MAX),
                context,
            });
        }
        let vocab = self.model.vocab_size;
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(LlmError::InvalidRequest(format!(
                "token id {bad} is past the vocabulary of {vocab} tokens"
            )));
        }
        match self.run(tokens, position) {
            Ok(logits) => {
                self.position = end.unwrap_or(usize::MAX);
                Ok(logits)
            }
            Err(e) => Err(self.explain(&e)),
        }
    }

    /// A candle error, or the lease's own error when the lease has ended.
    fn explain(&self, e: &candle_core::Error) -> LlmError {
        let ended = self
            .lease
            .handles()
            .ok()
            .and_then(|handles| handles.iter().find_map(|h| h.with_memory(|_| ()).err()));
        match ended {
            Some(vram) => LlmError::Vram(vram),
            None => compute(e),
        }
    }

    /// The embedding rows of `tokens`, `[1, tokens, dim]`.
    fn embed(&self, tokens: &[u32]) -> candle_core::Result<Tensor> {
        match &self.token_embedding {
            TokenEmbedding::Host(table) => {
                table.embedding(&Tensor::new(tokens, &Device::Cpu)?.unsqueeze(0)?)
            }
            #[cfg(feature = "cuda-engine")]
            TokenEmbedding::Device(blocks) => {
                let config = &self.model.config;
                let device = self.model.device.as_cuda_device()?;
                blocks
                    .device_memory(device)
                    .and_then(|memory| {
                        crate::cuda::embedding(
                            memory,
                            blocks.dtype(),
                            (self.model.vocab_size, config.embedding_length),
                            tokens,
                            device,
                        )
                    })
                    .map_err(candle_core::Error::wrap)
            }
            #[cfg(not(feature = "cuda-engine"))]
            TokenEmbedding::Device(_) => {
                candle_core::bail!("this build has no device engine (feature cuda-engine)")
            }
        }
    }

    fn run(&mut self, tokens: &[u32], position: usize) -> candle_core::Result<Vec<f32>> {
        let config = &self.model.config;
        let seq_len = tokens.len();
        let device = &self.model.device;
        let mask = if seq_len == 1 {
            None
        } else {
            Some(candle_transformers::utils::build_causal_mask(
                seq_len, position, device,
            )?)
        };
        let neg_inf = Tensor::new(f32::NEG_INFINITY, device)?;
        let cos = self.model.cos.narrow(0, position, seq_len)?;
        let sin = self.model.sin.narrow(0, position, seq_len)?;
        let eps = config.rms_norm_eps;
        let (n_head, n_kv_head, head_dim) =
            (config.head_count, config.head_count_kv, config.head_dim);
        let dim = config.embedding_length;
        let scale = f64::from(u32::try_from(head_dim).unwrap_or(u32::MAX)).sqrt();
        let groups = n_head.checked_div(n_kv_head).unwrap_or(1);

        let mut x = self.embed(tokens)?;
        for layer in &mut self.layers {
            let residual = &x;
            let h = rms_norm(&x, &layer.attention_norm, eps)?;
            let q = layer
                .wq
                .forward(&h)?
                .reshape((1, seq_len, n_head, head_dim))?
                .transpose(1, 2)?
                .contiguous()?;
            let k = layer
                .wk
                .forward(&h)?
                .reshape((1, seq_len, n_kv_head, head_dim))?
                .transpose(1, 2)?
                .contiguous()?;
            let v = layer
                .wv
                .forward(&h)?
                .reshape((1, seq_len, n_kv_head, head_dim))?
                .transpose(1, 2)?
                .contiguous()?;
            // K and V are rounded to f16 when cached, as llama.cpp's KV cache
            // is f16 by default (`type_k` = `type_v` = f16); ggml's F16
            // matmul converts its f32 operand to f16, so Q (and below, the
            // attention probabilities) is rounded too. The products of f16
            // values are exact in f32, where they are summed. The cache keeps
            // the rounded values as f32: widening the whole cache at every
            // step would cost more than it saves.
            let q = through_f16(&candle_nn::rotary_emb::rope_i(&q, &cos, &sin)?)?;
            let k = through_f16(&candle_nn::rotary_emb::rope_i(&k, &cos, &sin)?)?;
            let v = through_f16(&v)?;
            let (k, v) = match (&layer.kv_cache, position) {
                (Some((kc, vc)), p) if p > 0 => {
                    (Tensor::cat(&[kc, &k], 2)?, Tensor::cat(&[vc, &v], 2)?)
                }
                _ => (k, v),
            };
            layer.kv_cache = Some((k.clone(), v.clone()));
            let k = candle_transformers::utils::repeat_kv(k, groups)?;
            let v = candle_transformers::utils::repeat_kv(v, groups)?;
            // `Tensor / f64` is `affine(1 / v, 0)` in candle: the same op, named.
            let att = q.matmul(&k.t()?)?.affine(1.0 / scale, 0.0)?;
            let att = match &mask {
                None => att,
                Some(mask) => {
                    let mask = mask.broadcast_as(att.shape())?;
                    mask.where_cond(&neg_inf.broadcast_as(att.shape().dims())?, &att)?
                }
            };
            let att = through_f16(&candle_nn::ops::softmax_last_dim(&att)?)?;
            let y = att
                .matmul(&v.contiguous()?)?
                .transpose(1, 2)?
                .reshape((1, seq_len, dim))?;
            let y = layer.wo.forward(&y)?;
            let x1 = y.add(residual)?;

            let h = rms_norm(&x1, &layer.ffn_norm, eps)?;
            let gate = layer.w1.forward(&h)?;
            let up = layer.w3.forward(&h)?;
            let m = layer.w2.forward(&candle_nn::ops::silu(&gate)?.mul(&up)?)?;
            x = m.add(&x1)?;
        }
        let x = rms_norm(&x, &self.output_norm, eps)?;
        let x = x.i((.., seq_len.saturating_sub(1), ..))?.contiguous()?;
        let logits = self.output.forward(&x)?;
        logits.squeeze(0)?.to_dtype(DType::F32)?.to_vec1::<f32>()
    }
}

/// RMS norm as ggml computes it: squares in f32 summed in f64, the mean
/// back in f32, `x * (1 / sqrt(mean + eps)) * w`. On the CPU one pass over
/// the values (a chain of candle ops costs more than the sums at decode).
fn rms_norm(x: &Tensor, w: &Tensor, eps: f32) -> candle_core::Result<Tensor> {
    let n = x.dim(candle_core::D::Minus1)?;
    if x.device().is_cpu() {
        let mut values = x.flatten_all()?.to_vec1::<f32>()?;
        let weights = w.to_vec1::<f32>()?;
        if weights.len() != n || n == 0 {
            candle_core::bail!("rms norm: {} weights for rows of {n}", weights.len())
        }
        for row in values.chunks_exact_mut(n) {
            let sum: f64 = row.iter().map(|&v| f64::from(v * v)).sum();
            #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
            let mean = (sum / n as f64) as f32;
            let scale = 1.0 / (mean + eps).sqrt();
            for (v, &w) in row.iter_mut().zip(&weights) {
                *v = *v * scale * w;
            }
        }
        return Tensor::from_vec(values, x.shape(), x.device());
    }
    #[allow(clippy::cast_precision_loss)]
    let n = Tensor::new(n as f64, x.device())?;
    let mean = x
        .sqr()?
        .to_dtype(DType::F64)?
        .sum_keepdim(candle_core::D::Minus1)?
        .broadcast_div(&n)?
        .to_dtype(DType::F32)?;
    let scale = mean.affine(1.0, f64::from(eps))?.sqrt()?.recip()?;
    x.broadcast_mul(&scale)?.broadcast_mul(w)
}

/// `t` rounded to f16 and widened back to f32 (round to nearest even, as
/// ggml's f32 to f16 conversion): what an f32 operand of ggml's F16 matmul
/// becomes. On the CPU in one pass.
fn through_f16(t: &Tensor) -> candle_core::Result<Tensor> {
    if t.device().is_cpu() {
        let values: Vec<f32> = t
            .flatten_all()?
            .to_vec1::<f32>()?
            .into_iter()
            .map(|v| half::f16::from_f32(v).to_f32())
            .collect();
        return Tensor::from_vec(values, t.shape(), t.device());
    }
    t.to_dtype(DType::F16)?.to_dtype(DType::F32)
}

impl Drop for RequestModel<'_> {
    /// Waits for the device's queued work before the lease ends: on CUDA,
    /// kernels launched on the leased addresses run after their launch
    /// returns, and none may outlive the lease (a no-op on the CPU).
    fn drop(&mut self) {
        if let Err(e) = self.model.device.synchronize() {
            tracing::error!(error = %e, "waiting for the compute device before the lease ends");
        }
    }
}
