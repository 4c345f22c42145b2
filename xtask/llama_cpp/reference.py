"""llama.cpp (through llama-cpp-python) as the reference engine.

Shared by compare.py and bench.py: the model loaded with an explicit thread
count, a prompt rendered and tokenized as llama.cpp does (the file's own chat
template through llama-cpp-python's Jinja2ChatFormatter; BOS exactly as the
file's metadata says), and a greedy generation that keeps the logits at the
first generated position.
"""

import time

import numpy as np
from llama_cpp import Llama, llama_cpp
from llama_cpp.llama_chat_format import Jinja2ChatFormatter


def load(model_path, threads):
    return Llama(
        model_path=model_path,
        n_ctx=2048,
        n_threads=threads,
        n_threads_batch=threads,
        logits_all=False,
        verbose=False,
    )


def cpu_name():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def prompt_text(llm, prompt):
    if "text" in prompt:
        return prompt["text"]
    template = llm.metadata.get("tokenizer.chat_template")
    if template is None:
        raise SystemExit("the model has no chat template (tokenizer.chat_template)")
    model = llm._model
    formatter = Jinja2ChatFormatter(
        template=template,
        eos_token=model.token_get_text(model.token_eos()),
        bos_token=model.token_get_text(model.token_bos()),
        add_generation_prompt=True,
    )
    return formatter(messages=prompt["messages"]).prompt


def tokens_of(llm, text):
    # add_bos=True is llama.cpp's add_special: BOS only when the file's
    # metadata asks for it (tokenizer.ggml.add_bos_token).
    return llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)


def last_logits(llm):
    return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).copy()


def is_eog(llm, token):
    return bool(llama_cpp.llama_vocab_is_eog(llm._model.vocab, token))


def answer(llm, name, prompt, max_tokens, top):
    """One greedy generation, in the JSON shape greedy_report writes."""
    text = prompt_text(llm, prompt)
    tokens = tokens_of(llm, text)
    started = time.perf_counter()
    llm.reset()
    llm.eval(tokens)
    logits = last_logits(llm)
    order = np.argsort(-logits, kind="stable")[:top]
    top_pairs = [[int(i), float(logits[i])] for i in order]
    generated = []
    first = None
    finish = "length"
    while True:
        nxt = int(np.argmax(logits))
        generated.append(nxt)
        if first is None:
            first = time.perf_counter() - started
        if is_eog(llm, nxt):
            finish = "stop"
            break
        if len(generated) >= max_tokens:
            break
        llm.eval([nxt])
        logits = last_logits(llm)
    total = time.perf_counter() - started
    return {
        "name": name,
        "kind": "text" if "text" in prompt else "chat",
        "prompt_text": text,
        "prompt_tokens": tokens,
        "generated": generated,
        "text": llm.detokenize(generated).decode("utf-8", errors="replace"),
        "finish": finish,
        "top": top_pairs,
        "time_to_first_token_s": first,
        "lease_verification_s": 0.0,
        "decode_s": total - first,
        "decode_tokens": len(generated) - 1,
        "total_s": total,
    }
