"""Greedy decoding of the sealed engine against llama.cpp on the same GGUF.

Run by `cargo xtask llama-cpp` after `greedy_report` (vram-llm's example)
wrote the sealed engine's answers. Hard checks, per prompt: identical prompt
tokens (llama.cpp's tokenization, BOS as the file's metadata says), the same
first generated token, and the logits at llama.cpp's top-5 ids within the
tolerance. How many leading tokens agree is reported, not checked: llama.cpp
rounds activations to 8 bits before each quantized matmul, so independent
engines part ways after a few tokens of a long continuation.

Exit status: 0 when every hard check passes, 1 otherwise.
"""

import argparse
import json
import sys

import llama_cpp

import reference


def leading(a, b):
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def compare(ours, theirs, tolerance):
    ours_top = {i: v for i, v in ours["top"]}
    diffs = []
    for i, v in theirs["top"][:5]:
        diffs.append(abs(ours_top[i] - v) if i in ours_top else float("inf"))
    worst = max(diffs) if diffs else float("inf")
    tokens_equal = ours["prompt_tokens"] == theirs["prompt_tokens"]
    first_equal = ours["generated"][:1] == theirs["generated"][:1]
    return {
        "name": theirs["name"],
        "kind": theirs["kind"],
        "prompt_tokens": len(theirs["prompt_tokens"]),
        "prompt_tokens_equal": tokens_equal,
        "first_token_equal": first_equal,
        "top5_ids": [i for i, _ in theirs["top"][:5]],
        "top5_max_abs_diff": worst,
        "leading_tokens_agree": leading(ours["generated"], theirs["generated"]),
        "ours_tokens": len(ours["generated"]),
        "llama_cpp_tokens": len(theirs["generated"]),
        "ours_text": ours["text"],
        "llama_cpp_text": theirs["text"],
        "passed": tokens_equal and first_equal and worst <= tolerance,
    }


def shown(s, width):
    s = s.replace("\n", "\\n")
    return s if len(s) <= width else s[: width - 1] + "…"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompts", required=True)
    ap.add_argument("--engine-json", required=True, help="greedy_report's output")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--tolerance", type=float, default=0.75)
    args = ap.parse_args()

    with open(args.prompts, encoding="utf-8") as f:
        prompts = json.load(f)
    with open(args.engine_json, encoding="utf-8") as f:
        engine = json.load(f)
    if len(engine["prompts"]) != len(prompts):
        raise SystemExit("the engine's report does not answer the same prompts")

    llm = reference.load(args.model, args.threads)
    theirs = [
        reference.answer(llm, p.get("name", f"prompt {i}"), p, args.tokens, 64)
        for i, p in enumerate(prompts)
    ]
    rows = [compare(o, t, args.tolerance) for o, t in zip(engine["prompts"], theirs)]
    cpu = reference.cpu_name()

    print(f"\ngreedy, {args.tokens} tokens, {args.threads} thread(s), {cpu}")
    print(f"sealed engine: {engine['engine']}")
    print(f"llama.cpp: llama-cpp-python {llama_cpp.__version__}\n")
    print(
        f"{'prompt':<16} {'tokens':>6} {'same':>5} {'1st':>4} {'top-5 |d|':>9} {'agree':>9}  result"
    )
    for r in rows:
        print(
            f"{r['name']:<16} {r['prompt_tokens']:>6} {str(r['prompt_tokens_equal']):>5} "
            f"{'yes' if r['first_token_equal'] else 'NO':>4} {r['top5_max_abs_diff']:>9.3f} "
            f"{r['leading_tokens_agree']:>3} of {r['llama_cpp_tokens']:>2}  "
            f"{'ok' if r['passed'] else 'FAILED'}"
        )
    print()
    for r in rows:
        print(f"{r['name']}")
        print(f"  sealed    {shown(r['ours_text'], 100)}")
        print(f"  llama.cpp {shown(r['llama_cpp_text'], 100)}")

    passed = all(r["passed"] for r in rows)
    report = {
        "cpu": cpu,
        "threads": args.threads,
        "tokens": args.tokens,
        "tolerance": args.tolerance,
        "engine": engine["engine"],
        "llama_cpp_python": llama_cpp.__version__,
        "prompts": rows,
        "llama_cpp_answers": theirs,
        "passed": passed,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, ensure_ascii=False)
    print(f"\nwritten: {args.out}")
    if not passed:
        print("FAILED: a hard check failed (prompt tokens, first token or top-5 logits)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
