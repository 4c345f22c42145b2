"""`Manager.seal("hf://ORG/NAME")` from a Hugging Face hub cache laid out as
huggingface_hub writes one (offline): blobs named by their digest, a
snapshot of links, refs/main. A blob that is not what its name promises is
refused before anything is sealed."""

import hashlib
import os

import numpy as np
import pytest

import vram_residency as vr
from conftest import safetensors_bytes

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def make_cache(root, weights):
    repo = root / "hub" / "models--org--tiny"
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    snap = repo / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    files = {
        "model.safetensors": (weights, hashlib.sha256(weights).hexdigest()),
        "config.json": (
            b'{"layers": 2}\n',
            hashlib.sha1(b"blob 14\0" + b'{"layers": 2}\n').hexdigest(),
        ),
    }
    for name, (content, blob) in files.items():
        (repo / "blobs" / blob).write_bytes(content)
        os.symlink(f"../../blobs/{blob}", snap / name)
    return root / "hub", repo / "blobs" / files["model.safetensors"][1]


@pytest.fixture
def hub(tmp_path, monkeypatch):
    w = np.arange(64, dtype=np.float32).reshape(8, 8)
    weights, _ = safetensors_bytes([("layer.weight", w, "F32")])
    cache, blob = make_cache(tmp_path, weights)
    monkeypatch.delenv("HF_HOME", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return w, blob


def test_a_cached_model_is_sealed_by_name_with_its_commit(manager, hub):
    w, _ = hub
    model = manager.seal("hf://org/tiny")
    assert model.model_ref == f"hf://org/tiny@{COMMIT}"
    with manager.lease(model, policy="full") as lease:
        np.testing.assert_array_equal(lease.tensors()["layer.weight"].numpy(), w)


def test_a_blob_that_is_not_what_its_name_says_is_refused(manager, hub):
    _, blob = hub
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1
    blob.write_bytes(bytes(data))
    with pytest.raises(vr.IntegrityError, match="model.safetensors"):
        manager.seal("hf://org/tiny")
    assert manager.used_bytes() == 0


def test_an_uncached_model_is_a_clear_error(manager, hub):
    with pytest.raises(vr.VramError, match="org/absent"):
        manager.seal("hf://org/absent")
