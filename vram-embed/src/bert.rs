//! The BERT encoder, written once over [`BertWeights`]: how a request's
//! computation reaches the model's weights.
//!
//! candle-transformers' `BertModel` takes owned candle tensors, built by
//! copying each weight out of the source (`materialise.rs`, now the tests'
//! reference). No copy is wanted: the weights are computed on where the
//! seal keeps them, the host bytes of a lease on the mock (`host.rs`) or a
//! lease's device addresses (`cuda.rs`). This module is the forward pass
//! both run: the same operations, in the same order, as candle-transformers 0.11's
//! `models/bert.rs` for one unpadded sequence (embeddings = word +
//! token type, then + position; LayerNorm; per layer self-attention with
//! scores scaled by `1/sqrt(head size)`, softmax, the output dense layer,
//! residual and LayerNorm; the intermediate dense layer with the config's
//! activation; the output dense layer, residual and LayerNorm). The
//! attention mask of one unpadded sequence keeps every token: candle adds
//! zeros for it, which changes no value, so it is not built.
//!
//! `HostWeights` (tests) implements the weights over any [`TensorSource`] by
//! copying, as candle's layers do: on it this forward pass gives exactly
//! `BertModel`'s hidden states (tested below), which is what says the
//! encoder is right; an implementation then only has to get its three
//! operations right: `host.rs` (the CPU, weights read in place, also bit
//! for bit) and `cuda.rs`.

#[cfg(test)]
use candle_core::{DType, Device};
use candle_core::{Module, Tensor, D};
use candle_transformers::models::bert::{Config, HiddenAct};

use crate::{EmbedError, TensorSource};

/// How the forward pass reaches the weights of one request.
pub(crate) trait BertWeights {
    /// `x · Wᵀ + b` of the linear layer `prefix` (`prefix.weight`, shape
    /// `(out, input)`, and `prefix.bias`), for `x` of shape `(1, seq, input)`.
    fn linear(&self, prefix: &str, x: &Tensor, shape: (usize, usize))
        -> Result<Tensor, EmbedError>;

    /// A vector of `len` values (a LayerNorm's weight or bias), as an f32
    /// tensor of the request on the compute device.
    fn vector(&self, name: &str, len: usize) -> Result<Tensor, EmbedError>;

    /// Rows `ids` of the table `name` (`rows` × `hidden`), as a
    /// `(1, ids, hidden)` f32 tensor on the compute device. Every id is
    /// below `rows` (checked before the call).
    fn rows(&self, name: &str, ids: &[u32], table: (usize, usize)) -> Result<Tensor, EmbedError>;
}

fn model_err(e: candle_core::Error) -> EmbedError {
    EmbedError::model(&e)
}

/// The prefix the model's tensors are named under: none, `bert.`, or the
/// config's `model_type` (as `BertModel::load` tries them).
pub(crate) fn prefix<S: TensorSource + ?Sized>(weights: &S, config: &Config) -> String {
    let word = "embeddings.word_embeddings.weight";
    let mut candidates = vec![String::new(), "bert.".to_owned()];
    if let Some(model_type) = &config.model_type {
        candidates.push(format!("{model_type}."));
    }
    candidates
        .into_iter()
        .find(|p| weights.tensor(&format!("{p}{word}")).is_ok())
        .unwrap_or_default()
}

/// One LayerNorm of the model (`{name}.weight`, `{name}.bias`).
fn layer_norm<W: BertWeights + ?Sized>(
    w: &W,
    name: &str,
    hidden: usize,
    eps: f64,
    x: &Tensor,
) -> Result<Tensor, EmbedError> {
    let weight = w.vector(&format!("{name}.weight"), hidden)?;
    let bias = w.vector(&format!("{name}.bias"), hidden)?;
    candle_nn::LayerNorm::new(weight, bias, eps)
        .forward(x)
        .map_err(model_err)
}

fn activation(act: HiddenAct, x: &Tensor) -> Result<Tensor, EmbedError> {
    match act {
        HiddenAct::Gelu => x.gelu_erf(),
        HiddenAct::GeluApproximate => x.gelu(),
        HiddenAct::Relu => x.relu(),
    }
    .map_err(model_err)
}

/// The encoder's hidden states `(1, seq, hidden)` for one sequence of token
/// ids and type ids (equal lengths, ids checked against the vocabulary by
/// the caller; checked again here against every table).
///
/// # Errors
/// [`EmbedError::Model`] for a config the tensors do not fit or a failed
/// operation; whatever the weights report (a missing tensor, a wrong
/// shape, a lease that ended).
pub(crate) fn forward<W: BertWeights + ?Sized>(
    w: &W,
    config: &Config,
    prefix: &str,
    ids: &[u32],
    type_ids: &[u32],
) -> Result<Tensor, EmbedError> {
    let hidden = config.hidden_size;
    let heads = config.num_attention_heads;
    let n = ids.len();
    let head = hidden.checked_div(heads).unwrap_or(0);
    if head == 0 || head.checked_mul(heads) != Some(hidden) {
        return Err(EmbedError::Model {
            reason: format!("hidden_size {hidden} is not a multiple of {heads} heads"),
        });
    }
    if type_ids.len() != n || n == 0 {
        return Err(EmbedError::Model {
            reason: "token ids and type ids differ in length, or are empty".into(),
        });
    }
    if n > config.max_position_embeddings {
        return Err(EmbedError::Model {
            reason: format!(
                "{n} tokens, the model has {} positions",
                config.max_position_embeddings
            ),
        });
    }
    let check = |what: &str, v: &[u32], rows: usize| match v
        .iter()
        .find(|&&id| usize::try_from(id).map_or(true, |i| i >= rows))
    {
        Some(bad) => Err(EmbedError::Model {
            reason: format!("{what} {bad} is outside the model's {rows}"),
        }),
        None => Ok(()),
    };
    check("token id", ids, config.vocab_size)?;
    check("token type", type_ids, config.type_vocab_size)?;
    let eps = config.layer_norm_eps;
    let name = |rest: &str| format!("{prefix}{rest}");

    let positions: Vec<u32> = (0..n)
        .map(|i| u32::try_from(i).unwrap_or(u32::MAX))
        .collect();
    let words = w.rows(
        &name("embeddings.word_embeddings.weight"),
        ids,
        (config.vocab_size, hidden),
    )?;
    let types = w.rows(
        &name("embeddings.token_type_embeddings.weight"),
        type_ids,
        (config.type_vocab_size, hidden),
    )?;
    let position = w.rows(
        &name("embeddings.position_embeddings.weight"),
        &positions,
        (config.max_position_embeddings, hidden),
    )?;
    let embeddings = words
        .add(&types)
        .and_then(|e| e.broadcast_add(&position))
        .map_err(model_err)?;
    let mut x = layer_norm(w, &name("embeddings.LayerNorm"), hidden, eps, &embeddings)?;

    let split_heads = |t: &Tensor| {
        t.reshape((1, n, heads, head))
            .and_then(|t| t.transpose(1, 2))
            .and_then(|t| t.contiguous())
            .map_err(model_err)
    };
    let scale = f64::from(u32::try_from(head).unwrap_or(u32::MAX)).sqrt();
    for i in 0..config.num_hidden_layers {
        let layer = |rest: &str| name(&format!("encoder.layer.{i}.{rest}"));
        let q = w.linear(&layer("attention.self.query"), &x, (hidden, hidden))?;
        let k = w.linear(&layer("attention.self.key"), &x, (hidden, hidden))?;
        let v = w.linear(&layer("attention.self.value"), &x, (hidden, hidden))?;
        let (q, k, v) = (split_heads(&q)?, split_heads(&k)?, split_heads(&v)?);
        let context = k
            .t()
            .and_then(|kt| q.matmul(&kt))
            .and_then(|s| s.affine(1.0 / scale, 0.0))
            .and_then(|s| candle_nn::ops::softmax(&s, D::Minus1))
            .and_then(|p| p.matmul(&v))
            .and_then(|c| c.transpose(1, 2))
            .and_then(|c| c.contiguous())
            .and_then(|c| c.flatten_from(D::Minus2))
            .map_err(model_err)?;
        let attended = w.linear(&layer("attention.output.dense"), &context, (hidden, hidden))?;
        let attended = attended.add(&x).map_err(model_err)?;
        let attended = layer_norm(
            w,
            &layer("attention.output.LayerNorm"),
            hidden,
            eps,
            &attended,
        )?;
        let inner = w.linear(
            &layer("intermediate.dense"),
            &attended,
            (config.intermediate_size, hidden),
        )?;
        let inner = activation(config.hidden_act, &inner)?;
        let out = w.linear(
            &layer("output.dense"),
            &inner,
            (hidden, config.intermediate_size),
        )?;
        let out = out.add(&attended).map_err(model_err)?;
        x = layer_norm(w, &layer("output.LayerNorm"), hidden, eps, &out)?;
    }
    Ok(x)
}

/// The weights copied out of a host source into candle tensors, as
/// candle's own layers take them (one copy per use): the reference
/// implementation the device ones are checked against, and what the
/// forward pass is tested on here.
#[cfg(test)]
pub(crate) struct HostWeights<'a, S: ?Sized> {
    source: &'a S,
    device: Device,
}

#[cfg(test)]
impl<'a, S: TensorSource + Sync + ?Sized> HostWeights<'a, S> {
    /// Over `source`, computing on the CPU.
    pub(crate) fn new(source: &'a S) -> Self {
        Self {
            source,
            device: Device::Cpu,
        }
    }

    fn load(&self, name: &str, shape: &[usize]) -> Result<Tensor, EmbedError> {
        let record = crate::materialise::LoadRecord::default();
        let backend = crate::materialise::SourceBackend {
            source: self.source,
            record: &record,
        };
        backend.load(name, Some(shape), DType::F32, &self.device)
    }
}

#[cfg(test)]
impl<S: TensorSource + Sync + ?Sized> BertWeights for HostWeights<'_, S> {
    fn linear(
        &self,
        prefix: &str,
        x: &Tensor,
        (out, input): (usize, usize),
    ) -> Result<Tensor, EmbedError> {
        let weight = self.load(&format!("{prefix}.weight"), &[out, input])?;
        let bias = self.load(&format!("{prefix}.bias"), &[out])?;
        candle_nn::Linear::new(weight, Some(bias))
            .forward(x)
            .map_err(model_err)
    }

    fn vector(&self, name: &str, len: usize) -> Result<Tensor, EmbedError> {
        self.load(name, &[len])
    }

    fn rows(
        &self,
        name: &str,
        ids: &[u32],
        (rows, hidden): (usize, usize),
    ) -> Result<Tensor, EmbedError> {
        let table = self.load(name, &[rows, hidden])?;
        let ids = Tensor::new(ids, &self.device).map_err(model_err)?;
        table
            .index_select(&ids, 0)
            .and_then(|t| t.unsqueeze(0))
            .map_err(model_err)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::SafetensorsFile;

    /// A tiny BERT written with random weights, and its config.
    fn tiny() -> (tempfile::TempDir, SafetensorsFile, Config) {
        let config: Config = serde_json::from_str(
            r#"{"vocab_size": 40, "hidden_size": 16, "num_hidden_layers": 2,
                "num_attention_heads": 4, "intermediate_size": 24, "hidden_act": "gelu",
                "hidden_dropout_prob": 0.0, "max_position_embeddings": 32,
                "type_vocab_size": 2, "initializer_range": 0.02, "layer_norm_eps": 1e-12,
                "pad_token_id": 0, "model_type": "bert"}"#,
        )
        .unwrap();
        let (h, f) = (config.hidden_size, config.intermediate_size);
        let mut shapes: Vec<(String, Vec<usize>)> = vec![
            ("embeddings.word_embeddings.weight".into(), vec![40, h]),
            ("embeddings.position_embeddings.weight".into(), vec![32, h]),
            ("embeddings.token_type_embeddings.weight".into(), vec![2, h]),
            ("embeddings.LayerNorm.weight".into(), vec![h]),
            ("embeddings.LayerNorm.bias".into(), vec![h]),
        ];
        for i in 0..2 {
            let l = |s: &str| format!("encoder.layer.{i}.{s}");
            for (n, out, inp) in [
                ("attention.self.query", h, h),
                ("attention.self.key", h, h),
                ("attention.self.value", h, h),
                ("attention.output.dense", h, h),
                ("intermediate.dense", f, h),
                ("output.dense", h, f),
            ] {
                shapes.push((l(&format!("{n}.weight")), vec![out, inp]));
                shapes.push((l(&format!("{n}.bias")), vec![out]));
            }
            for n in ["attention.output.LayerNorm", "output.LayerNorm"] {
                shapes.push((l(&format!("{n}.weight")), vec![h]));
                shapes.push((l(&format!("{n}.bias")), vec![h]));
            }
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let tensors: Vec<(String, Tensor)> = shapes
            .into_iter()
            .map(|(name, shape)| {
                let count: usize = shape.iter().product();
                let values: Vec<f32> = (0..count)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        #[allow(clippy::cast_precision_loss)]
                        let u = (seed >> 40) as f32 / (1u64 << 24) as f32;
                        if name.ends_with("LayerNorm.weight") {
                            0.8 + 0.4 * u
                        } else {
                            u - 0.5
                        }
                    })
                    .collect();
                (name, Tensor::from_vec(values, shape, &Device::Cpu).unwrap())
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        candle_core::safetensors::save(
            &tensors
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
            &path,
        )
        .unwrap();
        let file = SafetensorsFile::read(&path).unwrap();
        (dir, file, config)
    }

    #[test]
    fn the_forward_pass_is_candle_s_bert_exactly() {
        let (_dir, file, config) = tiny();
        let ids = [1u32, 7, 22, 3, 39, 2];
        let types = [0u32, 0, 0, 1, 1, 1];
        let host = HostWeights::new(&file);
        let ours = forward(&host, &config, &prefix(&file, &config), &ids, &types).unwrap();
        // The CPU engine's weights, read in place (no weight copied).
        let in_place = crate::host::InPlaceWeights::new(&file);
        let served = forward(&in_place, &config, &prefix(&file, &config), &ids, &types).unwrap();
        let (converted, _, _) = in_place.converted();
        assert_eq!(converted, 0, "every F32 weight read in place");

        let record = crate::materialise::LoadRecord::default();
        let backend = crate::materialise::SourceBackend {
            source: &file,
            record: &record,
        };
        let vb = candle_nn::VarBuilder::from_backend(Box::new(backend), DType::F32, Device::Cpu);
        let model = candle_transformers::models::bert::BertModel::load(vb, &config).unwrap();
        let row = |v: &[u32]| Tensor::new(v, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let ones = vec![1u32; ids.len()];
        let theirs = model
            .forward(&row(&ids), &row(&types), Some(&row(&ones)))
            .unwrap();
        assert_eq!(ours.dims(), theirs.dims());
        let a = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = theirs.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a, b, "the same operations in the same order: bit for bit");
        let c = served.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(c, b, "the in-place CPU engine: bit for bit");
        // Not a constant: the comparison means something.
        assert!(a.iter().any(|v| (v - a[0]).abs() > 1e-3));
    }

    #[test]
    fn ids_outside_a_table_and_bad_shapes_are_refused() {
        let (_dir, file, config) = tiny();
        let host = HostWeights::new(&file);
        let p = prefix(&file, &config);
        let e = forward(&host, &config, &p, &[1, 40], &[0, 0]).unwrap_err();
        assert!(e.to_string().contains("token id 40"), "{e}");
        let e = forward(&host, &config, &p, &[1, 2], &[0, 2]).unwrap_err();
        assert!(e.to_string().contains("token type 2"), "{e}");
        assert!(forward(&host, &config, &p, &[1], &[0, 0]).is_err());
        assert!(forward(&host, &config, &p, &[], &[]).is_err());
        let long = vec![1u32; 33];
        let e = forward(&host, &config, &p, &long, &[0; 33]).unwrap_err();
        assert!(e.to_string().contains("32 positions"), "{e}");
        // A config the tensors do not fit: the tensor is named.
        let wide = Config {
            intermediate_size: 25,
            ..config.clone()
        };
        let e = forward(&host, &wide, &p, &[1, 2], &[0, 0]).unwrap_err();
        assert!(e.to_string().contains("intermediate.dense.weight"), "{e}");
    }
}
