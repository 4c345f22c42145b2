"""The CUDA engine against the CPU engine, and sealed against unsealed on the GPU.

Run by the GPU bundle's run.sh (`cargo xtask gpu`) on three reports of
`greedy_report` over the same model and prompts:

  --cpu       sealed on the mock, the CPU engine (the reference)
  --gpu       sealed on CUDA, the CUDA engine on leased device memory
  --unsealed  candle's own quantized llama on the GPU, no seal, no lease

Hard checks, per prompt (the CUDA engine against the CPU engine): identical
prompt tokens, the same first generated token, and the logits at the CPU
engine's top-5 ids within the tolerance. Reported: leading tokens that agree,
time to first token, decode tokens/s, and the lease's share of each request
(its verification time over the request's time). Standard library only: the
GPU machine has Python but no packages.

Exit status: 0 when every hard check passes, 1 otherwise.
"""

import argparse
import json
import statistics
import sys


def leading(a, b):
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def timings(report):
    rows = report["prompts"]
    decode_tokens = sum(r["decode_tokens"] for r in rows)
    decode_s = sum(r["decode_s"] for r in rows)
    shares = [r["lease_verification_s"] / r["total_s"] for r in rows if r["total_s"] > 0]
    return {
        "ttft_p50_ms": 1e3 * statistics.median(r["time_to_first_token_s"] for r in rows),
        "decode_tok_s": decode_tokens / decode_s if decode_s > 0 else float("nan"),
        "lease_ms_p50": 1e3 * statistics.median(r["lease_verification_s"] for r in rows),
        "lease_share_p50": statistics.median(shares) if shares else float("nan"),
        "total_p50_ms": 1e3 * statistics.median(r["total_s"] for r in rows),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cpu", required=True)
    ap.add_argument("--gpu", required=True)
    ap.add_argument("--unsealed")
    ap.add_argument("--tolerance", type=float, default=0.75)
    ap.add_argument("--out")
    args = ap.parse_args()
    load = lambda p: json.load(open(p, encoding="utf-8"))
    cpu, gpu = load(args.cpu), load(args.gpu)
    rows = []
    for c, g in zip(cpu["prompts"], gpu["prompts"]):
        gpu_top = {i: v for i, v in g["top"]}
        diffs = [abs(gpu_top[i] - v) if i in gpu_top else float("inf") for i, v in c["top"][:5]]
        worst = max(diffs) if diffs else float("inf")
        row = {
            "name": c["name"],
            "prompt_tokens_equal": c["prompt_tokens"] == g["prompt_tokens"],
            "first_token_equal": c["generated"][:1] == g["generated"][:1],
            "top5_max_abs_diff": worst,
            "leading_tokens_agree": leading(c["generated"], g["generated"]),
            "tokens": len(c["generated"]),
            "cpu_text": c["text"],
            "gpu_text": g["text"],
        }
        row["passed"] = row["prompt_tokens_equal"] and row["first_token_equal"] and worst <= args.tolerance
        rows.append(row)
    print(f"\nCUDA engine ({gpu['engine']}) vs CPU engine ({cpu['engine']})")
    print(f"{'prompt':<16} {'same':>5} {'1st':>4} {'top-5 |d|':>9} {'agree':>9}  result")
    for r in rows:
        print(
            f"{r['name']:<16} {str(r['prompt_tokens_equal']):>5} "
            f"{'yes' if r['first_token_equal'] else 'NO':>4} {r['top5_max_abs_diff']:>9.3f} "
            f"{r['leading_tokens_agree']:>3} of {r['tokens']:>2}  {'ok' if r['passed'] else 'FAILED'}"
        )
    for r in rows:
        print(f"{r['name']}\n  cpu {r['cpu_text'][:100]!r}\n  gpu {r['gpu_text'][:100]!r}")
    reports = {"sealed, CUDA engine": gpu, "sealed, CPU engine (mock)": cpu}
    if args.unsealed:
        reports["unsealed, candle on the GPU"] = load(args.unsealed)
    print(f"\n{'engine':<28} {'TTFT p50':>9} {'decode':>10} {'lease p50':>10} {'lease share':>11}")
    figures = {}
    for name, rep in reports.items():
        t = timings(rep)
        figures[name] = t
        print(
            f"{name:<28} {t['ttft_p50_ms']:>7.1f}ms {t['decode_tok_s']:>6.1f}tok/s "
            f"{t['lease_ms_p50']:>8.2f}ms {100 * t['lease_share_p50']:>10.2f}%"
        )
    passed = all(r["passed"] for r in rows)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump({"prompts": rows, "timings": figures, "passed": passed}, f, indent=2)
    if not passed:
        print("FAILED: a hard check failed (prompt tokens, first token or top-5 logits)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
