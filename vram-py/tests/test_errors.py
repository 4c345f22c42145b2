"""Exceptions: one base, the CLI's classes and exit codes, actionable messages."""

import os

import pytest

import vram_residency as vr


def test_the_classes_and_their_exit_codes():
    for cls, code, word in [
        (vr.IntegrityError, 1, "integrity"),
        (vr.UsageError, 2, "usage"),
        (vr.EnvironmentError, 3, "environment"),
    ]:
        assert issubclass(cls, vr.VramError)
        assert issubclass(cls, Exception)
        assert (cls.exit_code, cls.error_class) == (code, word)


def test_usage_errors(manager, model_file, tmp_path):
    path, _, _ = model_file
    model = manager.seal_file(path)
    for bad in ["", "sampled:0", "sampled:x", "fast"]:
        with pytest.raises(vr.UsageError, match="policy") as e:
            manager.lease(model, policy=bad)
        assert e.value.exit_code == 2
        with pytest.raises(vr.UsageError, match="policy"):
            manager.verify(model, policy=bad)
    with pytest.raises(vr.UsageError, match="no such file"):
        manager.seal_file(tmp_path / "missing.safetensors")
    with pytest.raises(vr.UsageError):
        vr.Manager(device="tpu", ephemeral_secret=True)
    with pytest.raises(vr.UsageError):
        vr.Manager(device="mock", secret_file=path, ephemeral_secret=True)
    # Opaque bytes seal (a seal covers any file), but hold no tensors.
    not_a_model = tmp_path / "x.bin"
    not_a_model.write_bytes(b"\xff" * 100)
    with manager.lease(manager.seal_file(not_a_model)) as lease:
        with pytest.raises(vr.UsageError, match="safetensors"):
            lease.tensors()


def test_without_a_secret_the_manager_asks_for_one(monkeypatch):
    monkeypatch.delenv("VRAM_SECRET_FILE", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(vr.EnvironmentError, match="ephemeral_secret=True") as e:
        vr.Manager(device="mock")
    assert e.value.exit_code == 3


def test_a_secret_file_others_can_read_is_refused(tmp_path):
    path = tmp_path / "loose.secret"
    path.write_bytes(os.urandom(32))
    os.chmod(path, 0o644)
    with pytest.raises(vr.EnvironmentError):
        vr.Manager(device="mock", secret_file=path)


def test_a_tensor_that_is_not_there(manager, model_file):
    path, _, _ = model_file
    with manager.lease(manager.seal_file(path)) as lease:
        with pytest.raises(KeyError):
            lease.tensors()["no.such.tensor"]
