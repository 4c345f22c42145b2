"""Sentence embeddings from all-MiniLM-L6-v2 (or any BERT sentence-transformers
snapshot), computed in NumPy on the sealed weights themselves.

The snapshot is sealed once (`Manager.seal_snapshot`, or `Manager.seal` for an
`hf://ORG/NAME` in the local Hugging Face cache). Every request then takes a
fresh, verified lease (`policy="sampled:1"` by default), reads the tensors as
zero-copy, read-only NumPy views of the sealed bytes (`Lease.arrays()`), runs
the BERT forward pass on those views (embeddings, every encoder layer, the
pooling the snapshot asks for, L2 normalisation when it has a `Normalize`
module), and ends the lease before the embedding is returned: what
`vram-embed` computes, in NumPy.

No copy of the weights is made per request: float32 tensors are used as they
lie (`x @ W.T` reads the view; the embedding lookup gathers only the rows of
the request's tokens). A snapshot stored as float16 or bfloat16 is converted
to float32 on every request (a copy of each such tensor, counted in
`Weights.converted_bytes` and announced on stderr): NumPy has no fast
half-precision matrix product, and keeping a converted copy across requests
would compute on bytes no lease vouches for.

Tokenization uses the `tokenizers` package when it is installed (the
snapshot's `tokenizer.json`, truncated to its `max_seq_length`, no padding, as
`vram-embed` does); without it, pass token ids (`--ids 101,7592,102`, `[CLS]`
and `[SEP]` included). Dependencies: numpy (and optionally tokenizers).

    python minilm_numpy.py --model hf://sentence-transformers/all-MiniLM-L6-v2 \\
        "A sealed model, verified before use."

Output: one JSON line per input, `{"tokens": N, "embedding": [...],
"lease": {"leaves_checked", "bytes_checked", "seconds"}}`; `--summary` prints
one short line per input instead.

The small files (config, tokenizer, pooling) are read from the snapshot
directory; the seal binds them, and a `vram-embed` server reads them back
through the seal (`VramManager::model_file`), which this package does not
expose yet.
"""

import argparse
import json
import math
import os
import sys

import numpy as np

import vram_residency as vr

# float32 weights are used as they lie; these are converted per request.
_CONVERTED = {"F16", "BF16"}


class Snapshot:
    """A sentence-transformers snapshot's small files: the BERT config, the
    tokenizer, the pooling mode, normalisation and `max_seq_length`."""

    def __init__(self, directory):
        self.dir = os.fspath(directory)
        modules = self._json("modules.json")
        transformer = pooling = None
        self.normalize = False
        for module in modules:
            kind = module.get("type", "")
            if kind.endswith(".Transformer") and transformer is None:
                transformer = module.get("path", "")
            elif kind.endswith(".Pooling") and pooling is None:
                pooling = module.get("path", "")
            elif kind.endswith(".Normalize"):
                self.normalize = True
            else:
                raise ValueError(f"modules.json: module type {kind!r} is not supported")
        if transformer is None or pooling is None:
            raise ValueError("modules.json: a Transformer and a Pooling module are required")
        self.config = self._json(os.path.join(transformer, "config.json"))
        if self.config.get("model_type", "bert") != "bert":
            raise ValueError("config.json: only BERT models are implemented")
        if self.config.get("hidden_act", "gelu") != "gelu":
            raise ValueError("config.json: only hidden_act gelu (erf) is implemented")
        pooling_config = self._json(os.path.join(pooling, "config.json"))
        on = [k for k, v in pooling_config.items() if k.startswith("pooling_mode_") and v is True]
        modes = {
            "pooling_mode_mean_tokens": "mean",
            "pooling_mode_cls_token": "cls",
            "pooling_mode_max_tokens": "max",
            "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
        }
        if len(on) != 1 or on[0] not in modes:
            raise ValueError(f"1_Pooling/config.json: unsupported pooling {on}")
        self.pooling = modes[on[0]]
        max_positions = int(self.config["max_position_embeddings"])
        st_path = os.path.join(self.dir, transformer, "sentence_bert_config.json")
        max_seq = None
        if os.path.isfile(st_path):
            max_seq = self._json(os.path.join(transformer, "sentence_bert_config.json")).get(
                "max_seq_length"
            )
        # Positions past the embedding table do not exist: never longer.
        self.max_seq_length = min(int(max_seq or max_positions), max_positions)
        self.tokenizer_path = os.path.join(self.dir, transformer, "tokenizer.json")

    def _json(self, rel):
        with open(os.path.join(self.dir, rel), "rb") as f:
            return json.loads(f.read())

    def tokenizer(self):
        """The snapshot's tokenizer (the `tokenizers` package), truncating to
        `max_seq_length` with no padding; None when the package is absent."""
        try:
            from tokenizers import Tokenizer
        except ImportError:
            return None
        with open(self.tokenizer_path, encoding="utf-8") as f:
            tok = Tokenizer.from_str(f.read())
        tok.enable_truncation(max_length=self.max_seq_length)
        tok.no_padding()
        return tok


class Weights:
    """The model's tensors for one request: NumPy views of a lease's tensors
    (no copy for float32), valid only while that lease is open.

    `plan` (the `plan` of an earlier request's `Weights` on the same model)
    says which views need converting: a model's tensors and dtypes never
    change once sealed, so only the first request looks at every view's
    dtype; later ones convert the few that need it (none for a float32
    model) and take the rest as `lease.arrays()` gives them."""

    def __init__(self, lease, plan=None):
        # Every tensor's view in one call (`lease.arrays()`).
        views = lease.arrays()
        if plan is None:
            plan = _conversions(lease, views)
        self.plan = plan
        self.converted_bytes = 0
        for name, kind in plan.items():
            view = views.pop(name)
            if kind == "f16":
                views[name] = view.astype(np.float32)
                self.converted_bytes += view.nbytes
            elif kind == "bf16":
                # bfloat16 is the upper half of a float32.
                views[name] = (view.astype(np.uint32) << 16).view(np.float32)
                self.converted_bytes += view.nbytes
            # "drop": other dtypes (position ids; none the forward pass
            # reads) are not the model's weights.
        self.arrays = views
        prefix = "" if "embeddings.word_embeddings.weight" in self.arrays else "bert."
        self.prefix = prefix

    def __getitem__(self, name):
        try:
            return self.arrays[self.prefix + name]
        except KeyError:
            raise KeyError(f"tensor {self.prefix + name} is missing from the weights") from None


def _conversions(lease, views):
    """{name: "f16" | "bf16" | "drop"} for each view that is not float32.
    bfloat16 shows as uint16 (its bits), as U16 would: the tensors' dtype
    names are read (`lease.tensors()`) only when a uint16 view is found."""
    plan = {}
    dtypes = None
    for name, view in views.items():
        if view.dtype == np.float32:
            continue
        if view.dtype == np.float16:
            plan[name] = "f16"
            continue
        if view.dtype == np.uint16:
            if dtypes is None:
                dtypes = {n: t.dtype for n, t in lease.tensors().items()}
            if dtypes[name] == "BF16":
                plan[name] = "bf16"
                continue
        plan[name] = "drop"
    return plan


def _erf(x):
    # Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7, under float32's
    # resolution at these magnitudes): NumPy has no erf, and candle's BERT uses
    # the exact (erf) GELU.
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (
        0.254829592
        + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    return sign * (1.0 - poly * np.exp(-a * a))


def _gelu(x):
    return 0.5 * x * (1.0 + _erf(x * np.float32(1.0 / math.sqrt(2.0))))


def _layer_norm(x, weight, bias, eps):
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(axis=-1, keepdims=True)
    return centred / np.sqrt(var + np.float32(eps)) * weight + bias


def _linear(x, w, prefix):
    # torch's Linear: weight (out, in); `.T` is a view, the product reads it in place.
    return x @ w[prefix + ".weight"].T + w[prefix + ".bias"]


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def forward(config, w, ids, type_ids):
    """The BERT encoder on one sequence: (tokens, hidden) float32."""
    n = len(ids)
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    head = hidden // heads
    eps = float(config.get("layer_norm_eps", 1e-12))
    ids = np.asarray(ids, dtype=np.int64)
    type_ids = np.asarray(type_ids, dtype=np.int64)
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][:n]
        + w["embeddings.token_type_embeddings.weight"][type_ids]
    )
    x = _layer_norm(
        x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps
    )
    scale = np.float32(1.0 / math.sqrt(head))
    for layer in range(int(config["num_hidden_layers"])):
        p = f"encoder.layer.{layer}"

        def split(t):
            return t.reshape(n, heads, head).transpose(1, 0, 2)

        q = split(_linear(x, w, f"{p}.attention.self.query"))
        k = split(_linear(x, w, f"{p}.attention.self.key"))
        v = split(_linear(x, w, f"{p}.attention.self.value"))
        # One unpadded sequence: the attention mask keeps every token.
        probs = _softmax((q @ k.transpose(0, 2, 1)) * scale)
        context = (probs @ v).transpose(1, 0, 2).reshape(n, hidden)
        attended = _linear(context, w, f"{p}.attention.output.dense")
        x = _layer_norm(
            attended + x,
            w[f"{p}.attention.output.LayerNorm.weight"],
            w[f"{p}.attention.output.LayerNorm.bias"],
            eps,
        )
        inner = _gelu(_linear(x, w, f"{p}.intermediate.dense"))
        out = _linear(inner, w, f"{p}.output.dense")
        x = _layer_norm(
            out + x,
            w[f"{p}.output.LayerNorm.weight"],
            w[f"{p}.output.LayerNorm.bias"],
            eps,
        )
    return x


def pool(snapshot, hidden):
    """Sentence-transformers' pooling of one unpadded sequence, then L2
    normalisation (norm at least 1e-12) when the snapshot asks for it."""
    if snapshot.pooling == "mean":
        v = hidden.mean(axis=0)
    elif snapshot.pooling == "cls":
        v = hidden[0]
    elif snapshot.pooling == "max":
        v = hidden.max(axis=0)
    else:
        v = hidden.sum(axis=0) / np.float32(math.sqrt(hidden.shape[0]))
    if snapshot.normalize:
        v = v / max(float(np.sqrt((v * v).sum())), 1e-12)
    return v.astype(np.float32)


class Embedder:
    """Embeds texts (or token ids) with one sealed model, a fresh lease per
    request."""

    def __init__(self, manager, model, snapshot, policy="sampled:1"):
        self.manager = manager
        self.model = model
        self.snapshot = snapshot
        self.policy = policy
        self._tokenizer = snapshot.tokenizer()
        self.converted_bytes = 0
        # Which views need converting (`Weights.plan`), from the first request.
        self._plan = None

    @property
    def can_tokenize(self):
        return self._tokenizer is not None

    def encode(self, text):
        """(ids, type_ids) for `text`; needs the `tokenizers` package."""
        if self._tokenizer is None:
            raise RuntimeError(
                "the `tokenizers` package is not installed: pip install tokenizers, "
                "or pass token ids (--ids)"
            )
        enc = self._tokenizer.encode(text)
        return list(enc.ids), list(enc.type_ids)

    def check_ids(self, ids):
        vocab = int(self.snapshot.config["vocab_size"])
        if not ids:
            raise ValueError("no token ids")
        if len(ids) > self.snapshot.max_seq_length:
            raise ValueError(
                f"{len(ids)} token ids, more than max_seq_length {self.snapshot.max_seq_length}"
            )
        bad = [i for i in ids if not 0 <= i < vocab]
        if bad:
            raise ValueError(f"token id {bad[0]} is outside the model's vocabulary of {vocab}")

    def embed_ids(self, ids, type_ids=None):
        """One request: a verified lease, the forward pass on its views, the
        lease ended. Returns (embedding, the lease's verification)."""
        self.check_ids(ids)
        if type_ids is None:
            type_ids = [0] * len(ids)
        with self.manager.lease(self.model, policy=self.policy) as lease:
            weights = self.weights(lease)
            if weights.converted_bytes:
                self.converted_bytes += weights.converted_bytes
            vector = pool(self.snapshot, forward(self.snapshot.config, weights, ids, type_ids))
            verification = lease.verification
        return vector, verification

    def weights(self, lease):
        """`Weights` of `lease` (a lease on this embedder's model)."""
        weights = Weights(lease, self._plan)
        self._plan = weights.plan
        return weights

    def embed(self, text):
        ids, type_ids = self.encode(text)
        return self.embed_ids(ids, type_ids) + (len(ids),)


def snapshot_dir(model):
    """The snapshot directory of `model`: a directory, or `hf://ORG/NAME[@REV]`
    in the local hub cache (`HF_HUB_CACHE`, else `HF_HOME/hub`, else
    `~/.cache/huggingface/hub`), as the Rust crates find it."""
    if not model.startswith("hf://"):
        return model
    name, _, rev = model[len("hf://") :].partition("@")
    cache = os.environ.get("HF_HUB_CACHE")
    if not cache:
        home = os.environ.get("HF_HOME") or os.path.join(
            os.path.expanduser("~"), ".cache", "huggingface"
        )
        cache = os.path.join(home, "hub")
    repo = os.path.join(cache, "models--" + name.replace("/", "--"))
    rev = rev or "main"
    ref = os.path.join(repo, "refs", rev)
    if os.path.isfile(ref):
        with open(ref, encoding="utf-8") as f:
            rev = f.read().strip()
    return os.path.join(repo, "snapshots", rev)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="snapshot DIR or hf://ORG/NAME[@REV]")
    parser.add_argument("--device", default="mock", help="mock (the default), auto, cuda, cuda:N")
    parser.add_argument("--policy", default="sampled:1", help="each request's lease policy")
    parser.add_argument("--secret-file", help="worker secret (else an ephemeral one)")
    parser.add_argument(
        "--ids",
        action="append",
        default=[],
        help="token ids of one input, comma-separated, [CLS] and [SEP] included (repeatable)",
    )
    parser.add_argument("--summary", action="store_true", help="one short line per input")
    parser.add_argument("texts", nargs="*", help="texts to embed (needs `tokenizers`)")
    args = parser.parse_args(argv)

    snapshot = Snapshot(snapshot_dir(args.model))
    if args.secret_file:
        manager = vr.Manager(device=args.device, secret_file=args.secret_file)
    else:
        print("note: no worker secret given: an ephemeral one seals for this process only",
              file=sys.stderr)
        manager = vr.Manager(device=args.device, ephemeral_secret=True)
    model = manager.seal(args.model)
    embedder = Embedder(manager, model, snapshot, policy=args.policy)
    inputs = [("ids", [int(t) for t in s.split(",") if t.strip()]) for s in args.ids]
    inputs += [("text", t) for t in args.texts]
    if not inputs:
        parser.error("give texts to embed, or --ids")
    for kind, value in inputs:
        if kind == "text":
            vector, verification, tokens = embedder.embed(value)
        else:
            vector, verification = embedder.embed_ids(value)
            tokens = len(value)
        if args.summary:
            head = " ".join(f"{x:+.4f}" for x in vector[:4])
            label = value if kind == "text" else f"ids {value}"
            leaves = int(verification["leaves_checked"])
            print(
                f"{label!r}: {tokens} tokens, {vector.shape[0]} dims, |v| = "
                f"{float(np.linalg.norm(vector)):.4f}, [{head} ...], lease verified "
                f"{leaves} {'leaf' if leaves == 1 else 'leaves'} "
                f"({int(verification['bytes_checked'])} bytes) in "
                f"{verification['seconds'] * 1e3:.2f} ms"
            )
        else:
            print(json.dumps({
                "tokens": tokens,
                "embedding": [float(x) for x in vector],
                "lease": verification,
            }))
    if embedder.converted_bytes:
        print(
            f"note: {embedder.converted_bytes} bytes of half-precision weights were converted "
            "to float32 across the requests (a copy per request)",
            file=sys.stderr,
        )
    model.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
