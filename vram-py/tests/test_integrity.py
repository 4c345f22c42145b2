"""A byte corrupted behind the seal's back (the test hook) shows in the
zero-copy array, and the next lease is refused, naming the tensor."""

import numpy as np
import pytest

import vram_residency as vr
from conftest import require_test_hooks


def test_a_corrupted_byte_shows_in_the_array_and_the_next_lease_is_refused(manager, model_file):
    require_test_hooks()
    path, expected, starts = model_file
    model = manager.seal_file(path)
    with manager.lease(model, policy="full") as lease:
        arr = lease.tensors()["quantized.blocks"].numpy()
        # The sealed bytes change under the view: it reads device memory itself.
        manager._corrupt_latest_for_tests(starts["quantized.blocks"] + 5, 0xFF)
        assert arr[5] == expected["quantized.blocks"][5] ^ 0xFF
        np.testing.assert_array_equal(arr[6:], expected["quantized.blocks"][6:])
    with pytest.raises(vr.IntegrityError) as refused:
        manager.lease(model, policy="full")
    e = refused.value
    assert "quantized.blocks" in str(e)
    assert "bytes 5..6" in str(e) or "quantized.blocks, bytes" in str(e)
    assert e.exit_code == 1 and e.error_class == "integrity"
    assert isinstance(e, vr.VramError)
    assert model.compromised
    # Compromised for good: every later lease or verification is refused.
    with pytest.raises(vr.IntegrityError):
        manager.lease(model, policy="sampled:1")
    with pytest.raises(vr.IntegrityError):
        manager.verify(model, policy="full")


def test_a_full_verification_names_the_corrupt_tensor(manager, model_file):
    require_test_hooks()
    path, _, starts = model_file
    model = manager.seal_file(path)
    # The first lease reads the shard's tensor table (from leaves checked
    # against the seal); from then on every failure names the tensors.
    manager.lease(model, policy="full").end()
    manager._corrupt_latest_for_tests(starts["encoder.bias"] + 1)
    with pytest.raises(vr.IntegrityError, match="encoder.bias"):
        manager.verify(model, policy="full")
