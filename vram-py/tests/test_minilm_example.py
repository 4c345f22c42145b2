"""The NumPy BERT example (`examples/minilm_numpy.py`) computes what
`vram-embed` computes: the same embeddings (cosine >= 0.9999 per input) on the
same snapshot and inputs, on a tiny BERT snapshot the test writes itself, and
on the real all-MiniLM-L6-v2 when `cargo xtask hf-cache` has laid it out
under `target/hf-cache`. Every request runs on zero-copy views of a fresh
lease.

`vram-embed` is the binary named by `$VRAM_EMBED_BIN` (`cargo xtask ci` builds
it and sets it). Without it the comparisons fail under `CI=true` and print
NOT RUN otherwise."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import vram_residency as vr
from conftest import require_test_hooks, write_safetensors

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "vram-py" / "examples" / "minilm_numpy.py"
REAL_MODEL = "hf://sentence-transformers/all-MiniLM-L6-v2"
REAL_CACHE = ROOT / "target" / "hf-cache" / "hub"


def load_example():
    spec = importlib.util.spec_from_file_location("minilm_numpy", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mn = load_example()

# The tiny BERT of vram-embed's tests (vram-embed/tests/common): the same
# shapes, vocabulary, tokenizer and pooling; its own random weights.
HIDDEN, LAYERS, HEADS, INTERMEDIATE, MAX_POSITIONS, MAX_SEQ = 32, 2, 4, 64, 64, 16
VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "cat", "dog", "sat", "on", "mat",
    "hello", "world", "seal", "model", "weights", "verified", "before", "use", "is", "in", "gpu",
    "memory", ".", ",", "!", "##s", "##ing", "##ed", "run", "good", "day", "x", "y", "z",
]
CLS, SEP = 2, 3

# Texts of whole vocabulary words and punctuation (their token ids are a
# lookup, so the test needs no tokenizer), one longer than MAX_SEQ tokens.
TEXTS = [
    "the cat sat on the mat.",
    "hello world!",
    "a",
    "model weights, verified before use in gpu memory.",
    "the dog sat on the mat , the cat sat on the mat , good day x y z",
]


def tensor_shapes():
    h = HIDDEN
    shapes = [
        ("embeddings.word_embeddings.weight", (len(VOCAB), h)),
        ("embeddings.position_embeddings.weight", (MAX_POSITIONS, h)),
        ("embeddings.token_type_embeddings.weight", (2, h)),
        ("embeddings.LayerNorm.weight", (h,)),
        ("embeddings.LayerNorm.bias", (h,)),
    ]
    for layer in range(LAYERS):
        p = f"encoder.layer.{layer}"
        for m in ("query", "key", "value"):
            shapes.append((f"{p}.attention.self.{m}.weight", (h, h)))
            shapes.append((f"{p}.attention.self.{m}.bias", (h,)))
        shapes += [
            (f"{p}.attention.output.dense.weight", (h, h)),
            (f"{p}.attention.output.dense.bias", (h,)),
            (f"{p}.attention.output.LayerNorm.weight", (h,)),
            (f"{p}.attention.output.LayerNorm.bias", (h,)),
            (f"{p}.intermediate.dense.weight", (INTERMEDIATE, h)),
            (f"{p}.intermediate.dense.bias", (INTERMEDIATE,)),
            (f"{p}.output.dense.weight", (h, INTERMEDIATE)),
            (f"{p}.output.dense.bias", (h,)),
            (f"{p}.output.LayerNorm.weight", (h,)),
            (f"{p}.output.LayerNorm.bias", (h,)),
        ]
    shapes += [("pooler.dense.weight", (h, h)), ("pooler.dense.bias", (h,))]
    return shapes


def tokenizer_json():
    """A BERT WordPiece tokenizer.json over VOCAB, shaped like
    all-MiniLM-L6-v2's (its own truncation and padding included, which both
    embedders must override)."""

    def special(i):
        return {"id": i, "special": True, "content": VOCAB[i], "single_word": False,
                "lstrip": False, "rstrip": False, "normalized": False}

    def template(id_, type_id):
        return {"SpecialToken": {"id": id_, "type_id": type_id}}

    return json.dumps({
        "version": "1.0",
        "truncation": {"max_length": 128, "strategy": "LongestFirst", "stride": 0},
        "padding": {"strategy": {"Fixed": 128}, "direction": "Right", "pad_to_multiple_of": None,
                    "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"},
        "added_tokens": [special(i) for i in range(5)],
        "normalizer": {"type": "BertNormalizer", "clean_text": True,
                       "handle_chinese_chars": True, "strip_accents": None, "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [template("[CLS]", 0), {"Sequence": {"id": "A", "type_id": 0}},
                       template("[SEP]", 0)],
            "pair": [template("[CLS]", 0), {"Sequence": {"id": "A", "type_id": 0}},
                     template("[SEP]", 0), {"Sequence": {"id": "B", "type_id": 1}},
                     template("[SEP]", 1)],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [CLS], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [SEP], "tokens": ["[SEP]"]},
            },
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100,
                  "vocab": {t: i for i, t in enumerate(VOCAB)}},
    })


def write_tiny_snapshot(directory, seed=11, dtype="F32", pooling="pooling_mode_mean_tokens"):
    """The snapshot layout vram-embed reads: weights, config, tokenizer,
    modules (Transformer, Pooling, Normalize), pooling config, max_seq_length."""
    directory = pathlib.Path(directory)
    (directory / "1_Pooling").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tensors = []
    for name, shape in tensor_shapes():
        r = rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)
        values = 1.0 + 0.1 * r if name.endswith("LayerNorm.weight") else 0.5 * r
        if dtype == "F16":
            tensors.append((name, values.astype(np.float16), "F16"))
        else:
            tensors.append((name, values.astype(np.float32), "F32"))
    write_safetensors(directory / "model.safetensors", tensors)
    (directory / "config.json").write_text(json.dumps({
        "architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": HIDDEN,
        "initializer_range": 0.02, "intermediate_size": INTERMEDIATE, "layer_norm_eps": 1e-12,
        "max_position_embeddings": MAX_POSITIONS, "model_type": "bert",
        "num_attention_heads": HEADS, "num_hidden_layers": LAYERS, "pad_token_id": 0,
        "position_embedding_type": "absolute", "type_vocab_size": 2, "vocab_size": len(VOCAB),
    }))
    (directory / "tokenizer.json").write_text(tokenizer_json())
    (directory / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize",
         "type": "sentence_transformers.models.Normalize"},
    ]))
    modes = {m: False for m in ("pooling_mode_cls_token", "pooling_mode_mean_tokens",
                                "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens")}
    modes[pooling] = True
    (directory / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": HIDDEN, **modes}))
    (directory / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": MAX_SEQ, "do_lower_case": False}))
    return directory


def lookup_ids(text):
    """Token ids of a text made of VOCAB words and punctuation, as BERT's
    WordPiece gives them, truncated to MAX_SEQ with [CLS] and [SEP]."""
    words = text.lower().replace(".", " . ").replace(",", " , ").replace("!", " ! ").split()
    ids = [VOCAB.index(w) for w in words][: MAX_SEQ - 2]
    return [CLS] + ids + [SEP]


def cosine(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def vram_embed_binary():
    """`$VRAM_EMBED_BIN`, or None after saying NOT RUN (a failure under CI)."""
    path = os.environ.get("VRAM_EMBED_BIN")
    if path and os.access(path, os.X_OK):
        return path
    why = (
        f"VRAM_EMBED_BIN={path!r} is not an executable" if path
        else "VRAM_EMBED_BIN is not set (cargo build -p vram-embed, then "
        "VRAM_EMBED_BIN=<target>/debug/vram-embed)"
    )
    message = f"NOT RUN: comparison with vram-embed: {why}"
    print(f"\n*** {message} ***", file=sys.stderr)
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    return None


def run_vram_embed(binary, model, texts, env=None):
    """vram-embed's JSON-lines mode on `texts`: one response per text."""
    lines = "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts))
    done = subprocess.run(
        [binary, "--model", str(model), "--device", "mock", "-q"],
        input=lines.encode(), capture_output=True, timeout=600,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    responses = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert [r.get("id") for r in responses] == list(range(len(texts))), responses
    return responses


@pytest.fixture
def tiny(tmp_path):
    directory = write_tiny_snapshot(tmp_path / "tiny")
    # One leaf for the whole tiny model, so that a sampled lease checks
    # every byte of it.
    manager = vr.Manager(device="mock", ephemeral_secret=True, leaf_size=1 << 20)
    model = manager.seal_snapshot(directory)
    embedder = mn.Embedder(manager, model, mn.Snapshot(directory))
    return directory, manager, model, embedder


def test_the_example_reads_the_snapshot_as_vram_embed_does(tiny):
    directory, _, _, embedder = tiny
    snap = embedder.snapshot
    assert (snap.pooling, snap.normalize, snap.max_seq_length) == ("mean", True, MAX_SEQ)
    assert snap.config["num_hidden_layers"] == LAYERS


def test_every_request_computes_on_zero_copy_views_of_a_fresh_lease(tiny):
    _, manager, model, embedder = tiny
    with manager.lease(model, policy="sampled:1") as lease:
        weights = mn.Weights(lease)
        assert weights.converted_bytes == 0
        tensors = lease.tensors()
        assert set(weights.arrays) == set(tensors)
        for name, array in weights.arrays.items():
            assert array.dtype == np.float32, name
            assert not array.flags.writeable, name
            # The example's array is a view of the sealed bytes themselves.
            assert np.shares_memory(array, tensors[name].numpy()), name
        before = embedder.embed_ids(lookup_ids(TEXTS[0]))[0]
    assert not lease.open
    # A request takes its own lease, granted after a verification.
    vector, verification = embedder.embed_ids(lookup_ids(TEXTS[0]))
    assert verification["leaves_checked"] >= 1
    assert verification["bytes_checked"] > 0
    np.testing.assert_array_equal(vector, before)
    assert embedder.converted_bytes == 0
    assert vector.shape == (HIDDEN,)
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


def test_a_corrupt_byte_refuses_the_next_request(tiny):
    require_test_hooks()
    _, manager, model, embedder = tiny
    embedder.embed_ids(lookup_ids(TEXTS[1]))
    # The last byte of the pooler's weight (the file's last tensors but one):
    # the forward pass never reads it, and the lease still refuses it. The tiny
    # model is one leaf, so one sampled leaf checks every byte.
    manager._corrupt_latest_for_tests(model.vram_bytes - 4 * HIDDEN - 1)
    with pytest.raises(vr.IntegrityError, match="corrupt range"):
        embedder.embed_ids(lookup_ids(TEXTS[1]))
    assert model.compromised
    # For good: no later request is served.
    with pytest.raises(vr.IntegrityError):
        embedder.embed_ids(lookup_ids(TEXTS[1]))


def test_the_example_refuses_token_ids_it_cannot_embed(tiny):
    embedder = tiny[3]
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        embedder.embed_ids([CLS, len(VOCAB), SEP])
    with pytest.raises(ValueError, match="max_seq_length"):
        embedder.embed_ids([CLS] + [5] * MAX_SEQ + [SEP])


def test_the_tokenizer_path_gives_the_lookup_ids(tiny):
    embedder = tiny[3]
    if not embedder.can_tokenize:
        print("\n*** NOT RUN: the `tokenizers` package is not installed: texts are not "
              "tokenized by the example (token ids are) ***", file=sys.stderr)
        if os.environ.get("CI") == "true":
            pytest.fail("tokenizers is not installed in the CI environment")
        return
    for text in TEXTS:
        ids, type_ids = embedder.encode(text)
        assert ids == lookup_ids(text), text
        assert type_ids == [0] * len(ids)


def test_embeddings_equal_vram_embed_on_the_tiny_bert(tiny):
    directory, _, _, embedder = tiny
    binary = vram_embed_binary()
    if binary is None:
        return
    responses = run_vram_embed(binary, directory, TEXTS)
    for text, response in zip(TEXTS, responses):
        assert "embedding" in response, response
        ids = lookup_ids(text)
        # vram-embed says how many tokens it kept when it cut the text.
        truncated = len(text.split()) > MAX_SEQ - 2
        assert response.get("truncated", False) == truncated, text
        if truncated:
            assert response["tokens"] == len(ids) == MAX_SEQ, text
        vector, _ = embedder.embed_ids(ids)
        c = cosine(vector, response["embedding"])
        assert c >= 0.9999, f"{text!r}: cosine {c}"
        if embedder.can_tokenize:
            vector, _, tokens = embedder.embed(text)
            assert tokens == len(ids), text
            assert cosine(vector, response["embedding"]) >= 0.9999, text


@pytest.mark.parametrize("pooling", ["pooling_mode_cls_token", "pooling_mode_max_tokens",
                                     "pooling_mode_mean_sqrt_len_tokens"])
def test_other_poolings_and_half_precision_equal_vram_embed(tmp_path, pooling):
    binary = vram_embed_binary()
    if binary is None:
        return
    directory = write_tiny_snapshot(tmp_path / "snap", seed=5, dtype="F16", pooling=pooling)
    manager = vr.Manager(device="mock", ephemeral_secret=True)
    embedder = mn.Embedder(manager, manager.seal_snapshot(directory), mn.Snapshot(directory))
    responses = run_vram_embed(binary, directory, TEXTS[:3])
    for text, response in zip(TEXTS, responses):
        vector, _ = embedder.embed_ids(lookup_ids(text))
        c = cosine(vector, response["embedding"])
        assert c >= 0.9999, f"{pooling} {text!r}: cosine {c}"
    # Half-precision weights are converted per request, and counted.
    assert embedder.converted_bytes > 0


def test_a_later_request_converts_by_the_first_request_s_plan(tiny, tmp_path):
    """`Weights(lease, plan)`: the same float32 arrays as a request that
    looks at every view, each from its own lease (no array of an earlier
    lease is reused)."""
    for dtype in ("F32", "F16"):
        directory = write_tiny_snapshot(tmp_path / dtype, seed=3, dtype=dtype)
        manager = vr.Manager(device="mock", ephemeral_secret=True)
        model = manager.seal_snapshot(directory)
        with manager.lease(model) as first:
            planned = mn.Weights(first)
            assert set(planned.plan.values()) <= {"f16", "drop"}, dtype
            assert ("f16" in planned.plan.values()) == (dtype == "F16")
            with manager.lease(model) as second:
                again = mn.Weights(second, planned.plan)
                looked = mn.Weights(second)
                assert again.plan is planned.plan
                assert set(again.arrays) == set(looked.arrays) == set(planned.arrays)
                assert again.converted_bytes == looked.converted_bytes
                fresh = second.arrays()
                for name, array in again.arrays.items():
                    assert array.dtype == np.float32, name
                    np.testing.assert_array_equal(array, looked.arrays[name])
                    if planned.plan.get(name) is None:
                        # A view of the second lease's memory, not the first's.
                        assert np.shares_memory(array, fresh[name]), name
                        assert array.base is not planned.arrays[name].base, name


def test_the_example_runs_as_a_program(tiny, capsys):
    directory = tiny[0]
    ids = ",".join(str(i) for i in lookup_ids(TEXTS[0]))
    assert mn.main(["--model", str(directory), "--ids", ids]) == 0
    line = json.loads(capsys.readouterr().out.strip())
    assert line["tokens"] == len(lookup_ids(TEXTS[0]))
    assert len(line["embedding"]) == HIDDEN
    assert line["lease"]["leaves_checked"] >= 1


REAL_TEXTS = [
    "A sealed model, verified before use.",
    "The quick brown fox jumps over the lazy dog.",
    "Verschlüsselte Gewichte im Grafikspeicher — ünïcödé text.",
    "",
    "word " * 300,
]


def test_embeddings_equal_vram_embed_on_the_real_model(monkeypatch):
    snapshot_ref = REAL_CACHE / "models--sentence-transformers--all-MiniLM-L6-v2"
    if not snapshot_ref.is_dir():
        print(f"\n*** NOT RUN: the real all-MiniLM-L6-v2 is not in {REAL_CACHE} "
              "(lay it out with: cargo xtask hf-cache) ***", file=sys.stderr)
        return
    binary = vram_embed_binary()
    if binary is None:
        return
    env = {"HF_HUB_CACHE": str(REAL_CACHE)}
    monkeypatch.setenv("HF_HUB_CACHE", str(REAL_CACHE))
    manager = vr.Manager(device="mock", ephemeral_secret=True)
    model = manager.seal(REAL_MODEL)
    embedder = mn.Embedder(manager, model, mn.Snapshot(mn.snapshot_dir(REAL_MODEL)))
    if not embedder.can_tokenize:
        print("\n*** NOT RUN: comparison on the real model: the `tokenizers` package is not "
              "installed ***", file=sys.stderr)
        if os.environ.get("CI") == "true":
            pytest.fail("tokenizers is not installed in the CI environment")
        return
    with manager.lease(model) as lease:
        dtypes = {t.dtype for t in lease.tensors().values()}
    # float32 weights (and the I64 `embeddings.position_ids` buffer, unused).
    assert dtypes <= {"F32", "I64"} and "F32" in dtypes, dtypes
    responses = run_vram_embed(binary, REAL_MODEL, REAL_TEXTS, env=env)
    for text, response in zip(REAL_TEXTS, responses):
        vector, _, tokens = embedder.embed(text)
        assert tokens == response.get("tokens", tokens), text[:40]
        assert response.get("truncated", False) == (tokens == embedder.snapshot.max_seq_length)
        c = cosine(vector, response["embedding"])
        diff = float(np.max(np.abs(vector - np.asarray(response["embedding"], dtype=np.float32))))
        print(f"real model: {text[:30]!r}: {tokens} tokens, cosine {c:.9f}, largest difference "
              f"{diff:.1e}", file=sys.stderr)
        assert c >= 0.9999, f"{text[:40]!r}: cosine {c}"
    assert embedder.converted_bytes == 0
    model.release()
