//! `greedy_report`: greedy answers of a GGUF llama model to a file of
//! prompts, as JSON, for comparison with llama.cpp (`cargo xtask llama-cpp`)
//! and for the decode benchmarks (`cargo xtask bench`).
//!
//! ```text
//! greedy_report --model FILE.gguf --prompts PROMPTS.json --out OUT.json
//!               [--engine sealed|unsealed] [--device mock|cuda:N] [--tokens N]
//!               [--top K] [--repeat R]
//! ```
//!
//! `--engine sealed` (the default): the file sealed on the device, the
//! engine computing on leased blocks, a `sampled:1` lease per prompt.
//! `--engine unsealed`: candle's stock `quantized_llama` over the file read
//! into memory (vram-llm has no unsealed path of its own), with the same
//! tokenizer and chat template from the file's metadata.
//!
//! `--device mock` (the default): sealed in host memory, computed on the
//! CPU. `--device cuda:N` (built with the feature `cuda-engine`): sealed in
//! the memory of CUDA device N and computed there by candle's CUDA kernels
//! on the leased addresses; unsealed, candle's own CUDA tensors (a copy of
//! the file in device memory).
//!
//! PROMPTS.json: `[{"name": "...", "text": "..."}, {"name": "...",
//! "messages": [{"role": "user", "content": "..."}]}]`; a chat goes through
//! the file's own chat template. Each prompt: its rendered text and tokens
//! (BOS as the metadata says), up to N greedy tokens (an end-of-generation
//! token ends the list and is part of it), the K largest logits at the first
//! generated position, and timings. The thread count is the caller's
//! (`RAYON_NUM_THREADS` for candle's own ops; the quantized kernels over
//! leased blocks run on the calling thread).

// A command-line tool: its report goes to a file, progress to stderr.
#![allow(clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;
use serde_json::{json, Value};
use vram_llm::{
    ChatMessage, Generator, GgufSource, LlamaConfig, LlamaModel, LlmError, LogitsModel,
    LogitsSource, Prompt,
};
use vram_residency::{
    LeasePolicy, ModelRef, SealRequest, SealSource, VramConfig, VramManager, WorkerSecret,
};

const USAGE: &str = "usage: greedy_report --model FILE.gguf --prompts PROMPTS.json --out OUT.json \
                     [--engine sealed|unsealed] [--device mock|cuda:N] [--tokens N] [--top K] \
                     [--repeat R]";

struct Args {
    model: PathBuf,
    prompts: PathBuf,
    out: PathBuf,
    sealed: bool,
    /// `None`: the mock and the CPU; `Some(n)`: CUDA device n.
    cuda: Option<u32>,
    tokens: usize,
    top: usize,
    repeat: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut model = None;
    let mut prompts = None;
    let mut out = None;
    let mut sealed = true;
    let mut cuda = None;
    let mut tokens = 32;
    let mut top = 64;
    let mut repeat = 1;
    let mut it = std::env::args().skip(1);
    let number = |v: Option<String>, flag: &str| -> Result<usize, String> {
        v.and_then(|v| v.parse().ok())
            .filter(|&n: &usize| n > 0)
            .ok_or_else(|| format!("{flag} needs a positive number\n{USAGE}"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--model" => model = it.next().map(PathBuf::from),
            "--prompts" => prompts = it.next().map(PathBuf::from),
            "--out" => out = it.next().map(PathBuf::from),
            "--engine" => {
                sealed = match it.next().as_deref() {
                    Some("sealed") => true,
                    Some("unsealed") => false,
                    _ => return Err(format!("--engine is sealed or unsealed\n{USAGE}")),
                }
            }
            "--device" => {
                cuda = match it.next().as_deref() {
                    Some("mock") => None,
                    Some(d) => Some(
                        d.strip_prefix("cuda:")
                            .and_then(|n| n.parse().ok())
                            .ok_or_else(|| format!("--device is mock or cuda:N\n{USAGE}"))?,
                    ),
                    None => return Err(format!("--device is mock or cuda:N\n{USAGE}")),
                }
            }
            "--tokens" => tokens = number(it.next(), "--tokens")?,
            "--top" => top = number(it.next(), "--top")?,
            "--repeat" => repeat = number(it.next(), "--repeat")?,
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok(Args {
        model: model.ok_or(USAGE)?,
        prompts: prompts.ok_or(USAGE)?,
        out: out.ok_or(USAGE)?,
        sealed,
        cuda,
        tokens,
        top,
        repeat,
    })
}

fn main() -> ExitCode {
    match parse_args().and_then(|a| run(&a)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("greedy_report: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The prompts of the file: a raw text or a chat.
fn read_prompts(args: &Args) -> Result<Vec<(String, Prompt)>, String> {
    let raw = std::fs::read_to_string(&args.prompts)
        .map_err(|e| format!("{}: {e}", args.prompts.display()))?;
    let list: Vec<Value> =
        serde_json::from_str(&raw).map_err(|e| format!("{}: {e}", args.prompts.display()))?;
    let mut prompts = Vec::with_capacity(list.len());
    for (i, p) in list.iter().enumerate() {
        let name = p
            .get("name")
            .and_then(Value::as_str)
            .map_or_else(|| format!("prompt {i}"), str::to_owned);
        let prompt = if let Some(t) = p.get("text").and_then(Value::as_str) {
            Prompt::Text(t.to_owned())
        } else if let Some(messages) = p.get("messages").and_then(Value::as_array) {
            let messages = messages
                .iter()
                .map(|m| {
                    let field = |k: &str| {
                        m.get(k)
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                            .ok_or_else(|| format!("{name}: a message without `{k}`"))
                    };
                    Ok(ChatMessage {
                        role: field("role")?,
                        content: field("content")?,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            Prompt::Chat(messages)
        } else {
            return Err(format!("{name}: neither `text` nor `messages`"));
        };
        prompts.push((name, prompt));
    }
    Ok(prompts)
}

fn run(args: &Args) -> Result<(), String> {
    let prompts = read_prompts(args)?;
    let load_started = Instant::now();
    let (model, generator, engine): (Arc<dyn LogitsModel>, Generator, &str) = if args.sealed {
        let (model, generator) = sealed(args)?;
        (
            model,
            generator,
            if args.cuda.is_some() {
                "vram-llm, sealed on a CUDA device, sampled:1 lease per prompt"
            } else {
                "vram-llm, sealed on the mock device, sampled:1 lease per prompt"
            },
        )
    } else {
        let (model, generator) = unsealed(args)?;
        (
            model,
            generator,
            if args.cuda.is_some() {
                "candle-transformers quantized_llama on the unsealed file, on a CUDA device"
            } else {
                "candle-transformers quantized_llama on the unsealed file"
            },
        )
    };
    eprintln!(
        "greedy_report: {engine}: loaded in {:.2} s",
        load_started.elapsed().as_secs_f64()
    );
    let mut results = Vec::new();
    for _ in 0..args.repeat {
        for (name, prompt) in &prompts {
            results.push(answer(args, &*model, &generator, name, prompt)?);
        }
    }
    let report = json!({
        "engine": engine,
        "model": args.model.display().to_string(),
        "threads": std::env::var("RAYON_NUM_THREADS").ok(),
        "prompts": results,
    });
    let body = serde_json::to_string_pretty(&report).map_err(text)?;
    std::fs::write(&args.out, body).map_err(|e| format!("{}: {e}", args.out.display()))
}

/// The file sealed as one shard on a mock device, the engine over it.
fn sealed(args: &Args) -> Result<(Arc<dyn LogitsModel>, Generator), String> {
    let file =
        std::fs::File::open(&args.model).map_err(|e| format!("{}: {e}", args.model.display()))?;
    let len = file.metadata().map_err(text)?.len();
    let (device, compute) = match args.cuda {
        None => {
            eprintln!(
                "greedy_report: sealing on the MOCK device (host memory standing in for VRAM)"
            );
            let device: Arc<dyn vram_residency::Device> =
                vram_mock::MockDevice::new(0, len.saturating_add(64 << 20));
            (device, Device::Cpu)
        }
        Some(n) => {
            eprintln!("greedy_report: sealing on CUDA device {n}");
            let devices = vram_residency::cuda_devices().map_err(text)?;
            let device = devices
                .get(n as usize)
                .cloned()
                .ok_or_else(|| format!("there is no CUDA device {n}"))?;
            (device, cuda_compute(n)?)
        }
    };
    let secret = WorkerSecret::generate_ephemeral().map_err(text)?;
    let manager = Arc::new(
        VramManager::new(VramConfig::builder(secret).device(device).build()).map_err(text)?,
    );
    let model_ref = ModelRef::new(&format!("file:{}", stem(args))).map_err(text)?;
    let shard = manager
        .seal(
            &SealRequest::new(model_ref.clone(), args.cuda.unwrap_or(0)),
            SealSource::file(&file),
        )
        .map_err(text)?;
    let model = Arc::new(
        LlamaModel::load_on(
            manager,
            GgufSource::Shard(Arc::new(shard)),
            LeasePolicy::Sampled { leaves: 1 },
            compute,
        )
        .map_err(text)?,
    );
    let metadata = model.metadata().clone();
    let dynamic: Arc<dyn LogitsModel> = model;
    let generator =
        Generator::from_gguf_metadata(model_ref.as_str(), Arc::clone(&dynamic), &metadata)
            .map_err(text)?;
    Ok((dynamic, generator))
}

/// Candle's CUDA device `n` (the engine's own check of its libraries).
#[cfg(feature = "cuda-engine")]
fn cuda_compute(n: u32) -> Result<Device, String> {
    vram_llm::cuda_device(n).map_err(text)
}

#[cfg(not(feature = "cuda-engine"))]
fn cuda_compute(_: u32) -> Result<Device, String> {
    Err("this build has no CUDA engine: build with --features cuda-engine (cargo xtask gpu)".into())
}

fn stem(args: &Args) -> String {
    args.model.file_stem().map_or_else(
        || "model".to_owned(),
        |s| {
            s.to_string_lossy()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect()
        },
    )
}

/// candle's stock quantized llama over the file's bytes (no seal, no lease).
struct Stock {
    weights: Mutex<ModelWeights>,
    device: Device,
    context: u32,
    vocab: usize,
}

struct StockRequest<'a>(MutexGuard<'a, ModelWeights>, &'a Device);

fn compute(e: &candle_core::Error) -> LlmError {
    LlmError::Compute(e.to_string())
}

impl LogitsSource for StockRequest<'_> {
    fn forward(&mut self, tokens: &[u32], position: usize) -> Result<Vec<f32>, LlmError> {
        let input = Tensor::new(tokens, self.1)
            .and_then(|t| t.unsqueeze(0))
            .map_err(|e| compute(&e))?;
        self.0
            .forward(&input, position)
            .and_then(|l| l.squeeze(0))
            .and_then(|l| l.to_vec1::<f32>())
            .map_err(|e| compute(&e))
    }
}

impl LogitsModel for Stock {
    fn start(&self) -> Result<(Box<dyn LogitsSource + '_>, Duration), LlmError> {
        let guard = self
            .weights
            .lock()
            .map_err(|_| LlmError::Compute("an earlier request panicked".to_owned()))?;
        Ok((Box::new(StockRequest(guard, &self.device)), Duration::ZERO))
    }

    fn context_length(&self) -> u32 {
        self.context
    }

    fn vocab_size(&self) -> usize {
        self.vocab
    }
}

fn unsealed(args: &Args) -> Result<(Arc<dyn LogitsModel>, Generator), String> {
    let bytes = std::fs::read(&args.model).map_err(|e| format!("{}: {e}", args.model.display()))?;
    let mut cursor = std::io::Cursor::new(bytes.as_slice());
    let content = gguf_file::Content::read(&mut cursor).map_err(text)?;
    let metadata = content.metadata.clone();
    let config = LlamaConfig::from_metadata(&metadata).map_err(text)?;
    let vocab = content
        .tensor_infos
        .get("token_embd.weight")
        .and_then(|t| t.shape.dims().first().copied())
        .ok_or("token_embd.weight is missing")?;
    let device = match args.cuda {
        None => Device::Cpu,
        Some(n) => cuda_compute(n)?,
    };
    let weights = ModelWeights::from_gguf(content, &mut cursor, &device).map_err(text)?;
    let model: Arc<dyn LogitsModel> = Arc::new(Stock {
        weights: Mutex::new(weights),
        device,
        context: config.context_length,
        vocab,
    });
    let generator = Generator::from_gguf_metadata(
        format!("file:{}", stem(args)),
        Arc::clone(&model),
        &metadata,
    )
    .map_err(text)?;
    Ok((model, generator))
}

/// The first index of the largest value.
fn argmax(logits: &[f32]) -> Result<u32, String> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in logits.iter().enumerate() {
        if best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.and_then(|(i, _)| u32::try_from(i).ok())
        .ok_or_else(|| "no logits".to_owned())
}

/// The `k` largest logits, largest first, as `[id, logit]` pairs.
fn top_k(logits: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut ids: Vec<usize> = (0..logits.len()).collect();
    ids.sort_by(|&a, &b| {
        let (x, y) = (logits.get(a), logits.get(b));
        y.zip(x)
            .map_or(std::cmp::Ordering::Equal, |(y, x)| y.total_cmp(x))
    });
    ids.into_iter()
        .take(k)
        .filter_map(|i| logits.get(i).map(|&v| (i, v)))
        .collect()
}

fn answer(
    args: &Args,
    model: &dyn LogitsModel,
    generator: &Generator,
    name: &str,
    prompt: &Prompt,
) -> Result<Value, String> {
    let prompt_text = generator.prompt_text(prompt).map_err(text)?;
    let tokens = generator.prompt_tokens(prompt).map_err(text)?;
    let started = Instant::now();
    let (mut source, lease) = model.start().map_err(text)?;
    let mut logits = source.forward(&tokens, 0).map_err(text)?;
    let top = top_k(&logits, args.top);
    let mut generated = Vec::with_capacity(args.tokens);
    let mut first_token = None;
    let mut position = tokens.len();
    let finish = loop {
        let next = argmax(&logits)?;
        generated.push(next);
        first_token.get_or_insert_with(|| started.elapsed());
        if generator.tokenizer().is_end_of_generation(next) {
            break "stop";
        }
        if generated.len() >= args.tokens {
            break "length";
        }
        logits = source.forward(&[next], position).map_err(text)?;
        position = position.saturating_add(1);
    };
    drop(source);
    let total = started.elapsed();
    let first = first_token.unwrap_or(total);
    let decoded = generated.len().saturating_sub(1);
    Ok(json!({
        "name": name,
        "kind": match prompt { Prompt::Text(_) => "text", Prompt::Chat(_) => "chat" },
        "prompt_text": prompt_text,
        "prompt_tokens": tokens,
        "generated": generated,
        "text": generator.tokenizer().decode(&generated),
        "finish": finish,
        "top": top,
        "time_to_first_token_s": first.as_secs_f64(),
        "lease_verification_s": lease.as_secs_f64(),
        "decode_s": total.saturating_sub(first).as_secs_f64(),
        "decode_tokens": decoded,
        "total_s": total.as_secs_f64(),
    }))
}
