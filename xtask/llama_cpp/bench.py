"""Decode rate, time to first token and request latency of a 32-token greedy
completion, side by side in one run (`cargo xtask bench`):

  vram-serve      sealed on the mock, a `sampled:1` lease per request, over
                  HTTP on loopback (streamed; the client's clock)
  sealed, in-process
                  the same engine without HTTP (vram-llm's greedy_report)
  unsealed        candle's stock quantized_llama on the unsealed file
                  (greedy_report --engine unsealed)
  llama.cpp       llama-cpp-python, in-process

Every engine runs on the same thread count (RAYON_NUM_THREADS for candle,
n_threads for llama.cpp). Also: the lease's share of a request (its
verification time from vram-serve's /metrics, per request, over the
request's latency; target <= 2% at p50) and the sealed server's decode rate
over llama.cpp's (target >= 0.8x). Figures only: nothing here asserts on time.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request

PROMPT = "Once upon a time, in a small village by the sea,"


def percentile(values, q):
    v = sorted(values)
    if not v:
        return float("nan")
    k = min(len(v) - 1, max(0, int(round(q / 100 * (len(v) - 1)))))
    return v[k]


def summary(rows):
    ttft = [r["ttft"] for r in rows]
    rate = [r["tokens"] / r["decode"] for r in rows if r["decode"] > 0]
    total = [r["total"] for r in rows]
    return {
        "runs": len(rows),
        "ttft_p50_ms": 1e3 * percentile(ttft, 50),
        "decode_tok_s_p50": percentile(rate, 50),
        "latency_p50_ms": 1e3 * percentile(total, 50),
        "latency_p99_ms": 1e3 * percentile(total, 99),
        "completion_tokens": sorted({r["tokens"] + 1 for r in rows}),
    }


def metric(base, name):
    with urllib.request.urlopen(base + "/metrics", timeout=30) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise SystemExit(f"/metrics has no {name}")


def stream_completion(base, tokens):
    body = json.dumps(
        {
            "prompt": PROMPT,
            "max_tokens": tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ).encode()
    req = urllib.request.Request(
        base + "/v1/completions", data=body, headers={"Content-Type": "application/json"}
    )
    started = time.perf_counter()
    first = None
    completion = None
    with urllib.request.urlopen(req, timeout=120) as r:
        for raw in r:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if first is None and any(c.get("text") for c in chunk.get("choices", [])):
                first = time.perf_counter()
            if chunk.get("usage"):
                completion = chunk["usage"]["completion_tokens"]
    end = time.perf_counter()
    if first is None or completion is None:
        raise SystemExit("vram-serve streamed no text or no usage")
    return {
        "ttft": first - started,
        "decode": end - first,
        "tokens": completion - 1,
        "total": end - started,
    }


def serve(args, env):
    proc = subprocess.Popen(
        [
            args.vram_serve,
            "--model", args.model,
            "--device", "mock",
            "--lease", "sampled:1",
            "--listen", "127.0.0.1:0",
            # One request at a time is sent; a second slot because the
            # server frees a slot just after the answer's last byte, and the
            # next request may arrive first.
            "--max-concurrent", "2",
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        prefix = "vram-serve: listening on "
        if not line.startswith(prefix):
            raise SystemExit(f"vram-serve did not start: {line!r}")
        base = line[len(prefix):].strip()
        for _ in range(args.warmup):
            stream_completion(base, args.tokens)
        rows, shares = [], []
        for _ in range(args.requests):
            before = metric(base, "vram_serve_lease_verification_seconds_sum")
            row = stream_completion(base, args.tokens)
            lease = metric(base, "vram_serve_lease_verification_seconds_sum") - before
            row["lease"] = lease
            shares.append(lease / row["total"])
            rows.append(row)
        return rows, shares
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def greedy_report(args, env, engine, requests):
    prompts = os.path.join(args.scratch, "bench-prompt.json")
    out = os.path.join(args.scratch, f"bench-{engine}.json")
    with open(prompts, "w", encoding="utf-8") as f:
        json.dump([{"name": "bench", "text": PROMPT}], f)
    subprocess.run(
        [
            args.greedy_report,
            "--engine", engine,
            "--model", args.model,
            "--prompts", prompts,
            "--out", out,
            "--tokens", str(args.tokens),
            "--repeat", str(requests + args.warmup),
        ],
        env=env,
        check=True,
    )
    with open(out, encoding="utf-8") as f:
        answers = json.load(f)["prompts"][args.warmup:]
    return [
        {
            "ttft": a["time_to_first_token_s"],
            "decode": a["decode_s"],
            "tokens": a["decode_tokens"],
            "total": a["total_s"],
        }
        for a in answers
    ]


def llama_cpp_rows(args):
    try:
        import reference
    except ImportError as e:
        print(
            f"\n*** llama.cpp row SKIPPED: {e}. Run `cargo xtask llama-cpp` once to build "
            "llama-cpp-python into target/llama-cpp. ***\n",
            file=sys.stderr,
        )
        return None
    llm = reference.load(args.model, args.threads)
    prompt = {"text": PROMPT}
    rows = []
    for i in range(args.requests + args.warmup):
        a = reference.answer(llm, "bench", prompt, args.tokens, 5)
        if i >= args.warmup:
            rows.append(
                {
                    "ttft": a["time_to_first_token_s"],
                    "decode": a["decode_s"],
                    "tokens": a["decode_tokens"],
                    "total": a["total_s"],
                }
            )
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--vram-serve", required=True)
    ap.add_argument("--greedy-report", required=True)
    ap.add_argument("--scratch", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--requests", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))

    results = {}
    served, shares = serve(args, env)
    results["vram-serve (sealed, sampled:1, HTTP)"] = summary(served)
    results["sealed, in-process"] = summary(
        greedy_report(args, env, "sealed", args.requests)
    )
    # candle's stock kernels are several times slower here: fewer runs.
    results["unsealed (candle quantized_llama)"] = summary(
        greedy_report(args, env, "unsealed", max(3, args.requests // 6))
    )
    theirs = llama_cpp_rows(args)
    if theirs is not None:
        results["llama.cpp (llama-cpp-python)"] = summary(theirs)

    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(
                (l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu
            )
    except OSError:
        pass
    print(
        f"\nSmolLM2-135M-Instruct Q4_1, {args.tokens}-token greedy completions, "
        f"{args.requests} requests after {args.warmup} warm-up, {args.threads} thread(s), {cpu}:"
    )
    print(
        f"  {'engine':<38} {'runs':>4} {'TTFT p50':>9} {'decode p50':>11} {'latency p50':>12} {'p99':>9}"
    )
    for name, s in results.items():
        print(
            f"  {name:<38} {s['runs']:>4} {s['ttft_p50_ms']:>6.1f} ms {s['decode_tok_s_p50']:>6.1f} tok/s"
            f" {s['latency_p50_ms']:>9.1f} ms {s['latency_p99_ms']:>6.1f} ms"
        )
    share = percentile(shares, 50)
    lease_ms = 1e3 * percentile([r["lease"] for r in served], 50)
    print(
        f"  lease verification: p50 {lease_ms:.3f} ms, {100 * share:.3f}% of a request at p50 "
        f"(target <= 2%)"
    )
    ratio = None
    if theirs is not None:
        ratio = (
            results["vram-serve (sealed, sampled:1, HTTP)"]["decode_tok_s_p50"]
            / results["llama.cpp (llama-cpp-python)"]["decode_tok_s_p50"]
        )
        print(f"  vram-serve decode rate: {ratio:.2f}x llama.cpp's (target >= 0.8x)")
    report = {
        "cpu": cpu,
        "threads": args.threads,
        "tokens": args.tokens,
        "requests": args.requests,
        "prompt": PROMPT,
        "engines": results,
        "lease_share_p50": share,
        "lease_verification_p50_ms": lease_ms,
        "decode_ratio_vs_llama_cpp": ratio,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    print(f"  written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
