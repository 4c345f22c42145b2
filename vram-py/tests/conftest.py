"""Shared helpers: small safetensors files written by the tests themselves
(the format's layout by hand: an 8-byte little-endian header length, a JSON
header padded with spaces to 8 bytes, then the tensors' bytes), a worker
secret, and a manager on the mock device."""

import json
import os
import struct
import sys

import numpy as np
import pytest

import vram_residency as vr


def safetensors_bytes(tensors):
    """`tensors`: list of (name, array, dtype name). Returns (file bytes,
    {name: absolute offset of its first data byte})."""
    header = {}
    blobs = []
    offset = 0
    for name, array, dtype in tensors:
        data = np.ascontiguousarray(array).tobytes()
        header[name] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    start = 8 + len(text)
    starts = {name: start + header[name]["data_offsets"][0] for name, _, _ in tensors}
    return struct.pack("<Q", len(text)) + text + b"".join(blobs), starts


def write_safetensors(path, tensors):
    data, starts = safetensors_bytes(tensors)
    with open(path, "wb") as f:
        f.write(data)
    return starts


def small_tensors():
    rng = np.random.default_rng(7)
    return [
        ("encoder.weight", rng.standard_normal((16, 8)).astype(np.float32), "F32"),
        ("encoder.bias", rng.standard_normal(8).astype(np.float16), "F16"),
        # bfloat16: the upper halves of float32s.
        (
            "head.weight",
            (rng.standard_normal(12).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16),
            "BF16",
        ),
        ("quantized.blocks", rng.integers(0, 255, size=64, dtype=np.uint8), "U8"),
    ]


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.safetensors"
    tensors = small_tensors()
    starts = write_safetensors(path, tensors)
    return path, {name: array for name, array, _ in tensors}, starts


@pytest.fixture
def manager():
    return vr.Manager(device="mock", ephemeral_secret=True)


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "worker.secret"
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
        f.write(os.urandom(32))
    return path


def require_test_hooks():
    """The corruption tests need the test build of the package
    (`maturin build --features test-corruption`): say so loudly, then fail."""
    if not vr._native.TEST_HOOKS:
        print(
            "vram_residency was built without the `test-corruption` feature: the corruption "
            "tests cannot run (build with: maturin build --features test-corruption)",
            file=sys.stderr,
        )
        pytest.fail("vram_residency built without test-corruption")
