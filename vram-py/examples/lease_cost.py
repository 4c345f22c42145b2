"""What a lease adds to a request computed in Python (the NumPy BERT of
`minilm_numpy.py`), and what the binding's calls cost.

The model is sealed on the mock device; then, interleaved so that drift in
the machine's load hits every variant alike, p50 and p99 of:

- `lease`: `mgr.lease(model, policy)` and `lease.end()` (the binding's
  verification call; compare with `cargo run --release -p vram-worker
  --example lease_cost`, the same facade calls from Rust);
- `lease + views`: the same plus `lease.arrays()` and the conversions the
  example makes (none for a float32 model): what a request does before it
  computes;
- `request`: a whole request as `minilm_numpy.py` serves it (fresh lease,
  views, forward pass, pooling, lease ended);
- `forward only`: the same forward pass and pooling on views held from one
  long lease of the same model (no verification per request).

With `--leaf-size BYTES` given more than once, the model is sealed once per
leaf size (a manager each) and all four variants run for each, all
variants of all leaf sizes in a new random order each round; without it,
the manager's default (64 KiB).

With `--parts`, each leaf size's calls are also timed apart after the
forward pass on held views, as a request meets them: `mgr.lease`,
`lease.arrays()`, `lease.end()`, and the same three in a tight loop
(warm), p50 of `--requests` each.

The lease's share of a request is (request - forward only) / forward only,
at p50, each leaf size against its own model's forward pass. Token ids stand in for text (`[CLS]`, N-2 ids, `[SEP]`), so the
`tokenizers` package is not needed.

    python lease_cost.py --model hf://sentence-transformers/all-MiniLM-L6-v2 \\
        [--policy sampled:1] [--requests 300] [--tokens 12 --tokens 128] \\
        [--leaf-size 1048576 --leaf-size 65536] [--parts]
"""

import argparse
import os
import platform
import random
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import minilm_numpy as mn  # noqa: E402
import vram_residency as vr  # noqa: E402


def percentile(values, p):
    return float(np.percentile(np.asarray(values), p * 100.0, method="nearest"))


def cpu_name():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def kib(n):
    return f"{n // 1024} KiB" if n < (1 << 20) else f"{n >> 20} MiB"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="snapshot DIR or hf://ORG/NAME[@REV]")
    parser.add_argument("--policy", default="sampled:1")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--tokens", type=int, action="append", default=[])
    parser.add_argument("--leaf-size", type=int, action="append", default=[])
    parser.add_argument("--parts", action="store_true",
                        help="also time lease, arrays() and end apart, cold and warm")
    args = parser.parse_args(argv)
    if args.requests < 10:
        parser.error("--requests: at least 10")
    tokens_list = args.tokens or [12, 128]
    leaf_sizes = args.leaf_size or [None]

    snapshot = mn.Snapshot(mn.snapshot_dir(args.model))
    sealed = []  # (label, manager, model, embedder)
    for leaf in leaf_sizes:
        mgr = vr.Manager(device="mock", ephemeral_secret=True, leaf_size=leaf)
        model = mgr.seal(args.model)
        leaves = mgr.verify(model, policy="full")["leaves_checked"]
        label = f"default ({leaves} leaves)" if leaf is None else f"{kib(leaf)} leaves"
        sealed.append((label, mgr, model, mn.Embedder(mgr, model, snapshot, policy=args.policy)))
    vocab = int(snapshot.config["vocab_size"])
    first = sealed[0]
    print(
        f"python lease cost: {first[2].model_ref} ({first[2].vram_bytes} bytes), mock device, "
        f"{args.policy}, {args.requests} requests each, numpy {np.__version__}, "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, "
        f"CPU: {cpu_name()} ({os.cpu_count()} logical CPUs), "
        f"load average at start {os.getloadavg()[0]:.2f}"
    )

    def lease_only(mgr, model):
        def run():
            lease = mgr.lease(model, policy=args.policy)
            lease.end()

        return run

    def lease_and_views(mgr, model, embedder):
        def run():
            with mgr.lease(model, policy=args.policy) as lease:
                embedder.weights(lease)

        return run

    # Each model's forward pass on views held from one long lease of its
    # own: the same memory its requests read (each manager's device memory
    # is its own mapping, and its pages may be laid out differently).
    long_leases = [mgr.lease(model, policy="full") for _, mgr, model, _ in sealed]
    held = [mn.Weights(lease) for lease in long_leases]
    try:
        for tokens in tokens_list:
            tokens = max(2, min(tokens, snapshot.max_seq_length))
            ids = [101 % vocab] + [(1000 + 7 * i) % vocab for i in range(tokens - 2)]
            ids.append(102 % vocab)
            type_ids = [0] * len(ids)

            def forward_only(weights):
                return lambda: mn.pool(
                    snapshot, mn.forward(snapshot.config, weights, ids, type_ids)
                )

            def request(embedder):
                return lambda: embedder.embed_ids(ids, type_ids)

            variants = []
            for (label, mgr, model, embedder), weights in zip(sealed, held):
                variants += [
                    (f"{label}: forward only", forward_only(weights)),
                    (f"{label}: lease", lease_only(mgr, model)),
                    (f"{label}: lease + views", lease_and_views(mgr, model, embedder)),
                    (f"{label}: request", request(embedder)),
                ]
            for _, f in variants:  # warm up
                for _ in range(5):
                    f()
            runs = {name: [] for name, _ in variants}
            order = random.Random(tokens)
            for _ in range(args.requests):
                # A new order each round: no variant always follows another.
                order.shuffle(variants)
                for name, f in variants:
                    t = time.perf_counter()
                    f()
                    runs[name].append(time.perf_counter() - t)
            print(f"  {len(ids)} tokens (load average now {os.getloadavg()[0]:.2f}):")
            for name in sorted(runs):
                print(
                    f"    {name:<36} p50 {percentile(runs[name], 0.5) * 1e3:9.3f} ms"
                    f"   p99 {percentile(runs[name], 0.99) * 1e3:9.3f} ms"
                )
            for label, _, _, _ in sealed:
                base = percentile(runs[f"{label}: forward only"], 0.5)
                added = percentile(runs[f"{label}: request"], 0.5) - base
                print(
                    f"    {label}: a {args.policy} lease adds {added * 1e3:.3f} ms to the "
                    f"p50 request: {100.0 * added / base:.2f}% of the forward pass"
                )
        if args.parts:
            parts(args, snapshot, sealed, held)
    finally:
        for lease in long_leases:
            lease.end()
    for _, _, model, _ in sealed:
        model.release()
    return 0


def parts(args, snapshot, sealed, held):
    """`--parts`: a lease's calls timed apart, right after a forward pass
    (as a request meets them) and in a tight loop (warm)."""
    tokens = max(2, min(12, snapshot.max_seq_length))
    vocab = int(snapshot.config["vocab_size"])
    ids = [101 % vocab] + [(1000 + 7 * i) % vocab for i in range(tokens - 2)] + [102 % vocab]
    type_ids = [0] * len(ids)
    print(f"  the calls apart, p50 in us ({args.requests} each; cold: after a {tokens}-token forward pass):")
    for (label, mgr, model, _), weights in zip(sealed, held):
        for mode in ("cold", "warm"):
            runs = {"lease": [], "arrays()": [], "end": []}
            for _ in range(args.requests):
                if mode == "cold":
                    mn.pool(snapshot, mn.forward(snapshot.config, weights, ids, type_ids))
                t0 = time.perf_counter()
                lease = mgr.lease(model, policy=args.policy)
                t1 = time.perf_counter()
                views = lease.arrays()
                t2 = time.perf_counter()
                lease.end()
                t3 = time.perf_counter()
                del views
                runs["lease"].append(t1 - t0)
                runs["arrays()"].append(t2 - t1)
                runs["end"].append(t3 - t2)
            print(
                f"    {label:<24} {mode}: "
                + "   ".join(f"{k} {percentile(v, 0.5) * 1e6:7.1f}" for k, v in runs.items())
            )


if __name__ == "__main__":
    sys.exit(main())
