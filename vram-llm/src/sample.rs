//! Choosing the next token from the logits: greedy at temperature 0,
//! otherwise temperature and nucleus (top-p) sampling from a seeded random
//! stream (candle-transformers' `LogitsProcessor`), so the same seed gives
//! the same text.

use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};

use crate::{LlmError, SamplingParams};

/// The sampler of one request.
pub struct Sampler {
    mode: Mode,
}

enum Mode {
    Greedy,
    Random(Box<LogitsProcessor>),
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.mode {
            Mode::Greedy => "greedy",
            Mode::Random(_) => "random",
        };
        f.debug_struct("Sampler").field("mode", &mode).finish()
    }
}

impl Sampler {
    /// A sampler for `params`.
    ///
    /// # Errors
    /// [`LlmError::InvalidRequest`] for a temperature that is negative or not
    /// finite, or a `top_p` outside (0, 1].
    pub fn new(params: &SamplingParams) -> Result<Self, LlmError> {
        let t = params.temperature;
        if !t.is_finite() || t < 0.0 {
            return Err(LlmError::InvalidRequest(
                "temperature must be a finite number >= 0".to_owned(),
            ));
        }
        if let Some(p) = params.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(LlmError::InvalidRequest(
                    "top_p must be in (0, 1]".to_owned(),
                ));
            }
        }
        if t == 0.0 {
            return Ok(Self { mode: Mode::Greedy });
        }
        let sampling = match params.top_p {
            Some(p) if p < 1.0 => Sampling::TopP { p, temperature: t },
            _ => Sampling::All { temperature: t },
        };
        Ok(Self {
            mode: Mode::Random(Box::new(LogitsProcessor::from_sampling(
                params.seed,
                sampling,
            ))),
        })
    }

    /// Chooses the next token.
    ///
    /// # Errors
    /// [`LlmError::Compute`] when the logits are empty or hold no number
    /// (NaN everywhere), or sampling fails on them.
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32, LlmError> {
        match &mut self.mode {
            Mode::Greedy => greedy(logits),
            Mode::Random(p) => {
                if logits.iter().any(|x| x.is_nan()) {
                    return Err(LlmError::Compute("the logits hold NaN".to_owned()));
                }
                let t = Tensor::from_slice(logits, logits.len(), &Device::Cpu)
                    .map_err(|e| LlmError::Compute(format!("sampling: {e}")))?;
                p.sample(&t)
                    .map_err(|e| LlmError::Compute(format!("sampling: {e}")))
            }
        }
    }
}

/// The id of the largest logit; ties go to the lowest id; NaN is skipped.
fn greedy(logits: &[f32]) -> Result<u32, LlmError> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &x) in logits.iter().enumerate() {
        if x.is_nan() {
            continue;
        }
        if best.is_none_or(|(_, b)| x > b) {
            best = Some((i, x));
        }
    }
    let (i, _) = best.ok_or_else(|| LlmError::Compute("the logits hold no number".to_owned()))?;
    u32::try_from(i).map_err(|_| LlmError::Compute("vocabulary over u32".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f64, top_p: Option<f64>, seed: u64) -> SamplingParams {
        SamplingParams {
            temperature,
            top_p,
            seed,
        }
    }

    #[test]
    fn greedy_takes_the_largest_and_the_lowest_id_on_ties() {
        let mut s = Sampler::new(&params(0.0, None, 0)).unwrap();
        assert_eq!(s.sample(&[0.1, 3.0, -1.0, 3.0]).unwrap(), 1);
        assert_eq!(s.sample(&[f32::NAN, 2.0, 1.0]).unwrap(), 1);
        assert_eq!(s.sample(&[-5.0, -5.0]).unwrap(), 0);
        assert!(matches!(s.sample(&[]), Err(LlmError::Compute(_))));
        assert!(matches!(s.sample(&[f32::NAN]), Err(LlmError::Compute(_))));
    }

    #[test]
    fn the_same_seed_draws_the_same_tokens_and_another_seed_other_ones() {
        let logits: Vec<f32> = (0..64).map(|i| ((i * 7) % 13) as f32 * 0.1).collect();
        let draw = |seed| {
            let mut s = Sampler::new(&params(1.0, Some(0.95), seed)).unwrap();
            (0..40)
                .map(|_| s.sample(&logits).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn a_small_top_p_keeps_only_the_most_likely_token() {
        let mut logits = vec![0.0f32; 32];
        logits[5] = 10.0;
        let mut s = Sampler::new(&params(1.0, Some(0.5), 3)).unwrap();
        for _ in 0..50 {
            assert_eq!(s.sample(&logits).unwrap(), 5);
        }
    }

    #[test]
    fn out_of_range_parameters_are_refused() {
        for p in [
            params(-1.0, None, 0),
            params(f64::NAN, None, 0),
            params(1.0, Some(0.0), 0),
            params(1.0, Some(1.5), 0),
        ] {
            assert!(matches!(Sampler::new(&p), Err(LlmError::InvalidRequest(_))));
        }
    }
}
