//! Sentence-transformers' pooling (`1_Pooling/config.json`) and
//! normalisation (a `Normalize` module in `modules.json`), on candle tensors.

use candle_core::{DType, Tensor, D};
use serde_json::{Map, Value};

use crate::EmbedError;

/// How token embeddings become one sentence embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pooling {
    /// The mean of the token embeddings the attention mask keeps
    /// (`pooling_mode_mean_tokens`).
    Mean,
    /// The first token's embedding (`pooling_mode_cls_token`).
    Cls,
    /// The element-wise maximum over kept tokens (`pooling_mode_max_tokens`).
    Max,
    /// The sum over kept tokens divided by the square root of their number
    /// (`pooling_mode_mean_sqrt_len_tokens`).
    MeanSqrtLen,
}

impl Pooling {
    /// Reads a `1_Pooling/config.json` object. Exactly one mode must be on;
    /// a mode this crate does not implement (weighted mean, last token, a
    /// combination) is refused rather than ignored, since ignoring it would
    /// silently change the embeddings. `hidden_size` is checked against
    /// `word_embedding_dimension`.
    ///
    /// # Errors
    ///
    /// A reason, for [`EmbedError::Snapshot`].
    pub(crate) fn from_config(
        config: &Map<String, Value>,
        hidden_size: usize,
    ) -> Result<Self, String> {
        if let Some(dim) = config.get("word_embedding_dimension") {
            if dim.as_u64() != u64::try_from(hidden_size).ok() {
                return Err(format!(
                    "word_embedding_dimension is {dim}, the model's hidden_size is {hidden_size}"
                ));
            }
        }
        if config
            .get("include_prompt")
            .is_some_and(|v| v != &Value::Bool(true))
        {
            return Err("include_prompt other than true is not supported".to_owned());
        }
        let mut on = Vec::new();
        for (key, value) in config {
            if !key.starts_with("pooling_mode_") {
                continue;
            }
            match value {
                Value::Bool(false) => {}
                Value::Bool(true) => on.push(key.as_str()),
                other => return Err(format!("{key} is {other}, not a boolean")),
            }
        }
        match on.as_slice() {
            ["pooling_mode_mean_tokens"] => Ok(Self::Mean),
            ["pooling_mode_cls_token"] => Ok(Self::Cls),
            ["pooling_mode_max_tokens"] => Ok(Self::Max),
            ["pooling_mode_mean_sqrt_len_tokens"] => Ok(Self::MeanSqrtLen),
            [] => Err("no pooling mode is on".to_owned()),
            [one] => Err(format!("{one} is not supported")),
            many => Err(format!(
                "several pooling modes at once ({}) are not supported",
                many.join(", ")
            )),
        }
    }

    /// Pools `hidden` (batch, tokens, hidden) under `mask` (batch, tokens;
    /// 1 for a kept token) into (batch, hidden), as sentence-transformers'
    /// `Pooling.forward` does.
    pub(crate) fn apply(self, hidden: &Tensor, mask: &Tensor) -> Result<Tensor, EmbedError> {
        self.apply_candle(hidden, mask)
            .map_err(|e| EmbedError::model(&e))
    }

    fn apply_candle(self, hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(D::Minus1)?; // (b, t, 1)
        match self {
            Self::Cls => hidden.narrow(1, 0, 1)?.squeeze(1),
            Self::Mean | Self::MeanSqrtLen => {
                let summed = hidden.broadcast_mul(&mask)?.sum(1)?; // (b, h)
                                                                   // torch.clamp(mask.sum(1), min=1e-9), as sentence-transformers.
                let count = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?; // (b, 1)
                let divisor = if self == Self::Mean {
                    count
                } else {
                    count.sqrt()?
                };
                summed.broadcast_div(&divisor)
            }
            Self::Max => {
                // Masked tokens set to -1e9 before the maximum, as
                // sentence-transformers does.
                // mask * 1e9 - 1e9: 0 for a kept token, -1e9 for another.
                let dropped = mask.affine(1e9, -1e9)?;
                let kept = hidden.broadcast_mul(&mask)?.broadcast_add(&dropped)?;
                kept.max(1)
            }
        }
    }
}

/// Divides each row by its L2 norm (at least 1e-12), as
/// `torch.nn.functional.normalize(p=2, dim=1)`.
pub(crate) fn l2_normalise(x: &Tensor) -> Result<Tensor, EmbedError> {
    let norm = || -> candle_core::Result<Tensor> {
        let n = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
        x.broadcast_div(&n.clamp(1e-12f32, f32::MAX)?)
    };
    norm().map_err(|e| EmbedError::model(&e))
}
