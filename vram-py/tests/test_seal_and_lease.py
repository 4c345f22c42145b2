"""Sealing, leases and zero-copy NumPy views."""

import numpy as np
import pytest

import vram_residency as vr
from conftest import require_test_hooks, write_safetensors


def test_a_sealed_file_is_verified_and_leased_and_its_tensors_read_zero_copy(manager, model_file):
    path, expected, _ = model_file
    model = manager.seal_file(path)
    assert manager.device_kind == "mock"
    assert model.model_ref == "file:model.safetensors"
    assert model.vram_bytes == path.stat().st_size
    report = manager.verify(model, policy="full")
    assert report["bytes_checked"] == path.stat().st_size
    assert report["leaves_checked"] >= 1

    with manager.lease(model, policy="sampled:1") as lease:
        assert lease.open
        assert lease.verification["leaves_checked"] >= 1
        tensors = lease.tensors()
        assert sorted(tensors) == sorted(expected)
        w = tensors["encoder.weight"]
        assert (w.name, w.dtype, w.shape) == ("encoder.weight", "F32", (16, 8))
        arr = w.numpy()
        assert arr.dtype == np.float32 and arr.shape == (16, 8)
        np.testing.assert_array_equal(arr, expected["encoder.weight"])
        # Read-only: the sealed bytes cannot be written through the view.
        assert not arr.flags.writeable
        with pytest.raises(ValueError):
            arr[0, 0] = 1.0
        # Zero-copy: two views of one tensor are the same memory.
        again = lease.tensors()["encoder.weight"].numpy()
        assert np.shares_memory(arr, again)
        assert arr.ctypes.data == again.ctypes.data

        bias = tensors["encoder.bias"].numpy()
        assert bias.dtype == np.float16
        np.testing.assert_array_equal(bias, expected["encoder.bias"])
        head = tensors["head.weight"].numpy()
        assert head.dtype == np.uint16  # bfloat16, as its bits
        np.testing.assert_array_equal(head, expected["head.weight"])
        blocks = tensors["quantized.blocks"].numpy()
        assert blocks.dtype == np.uint8
        np.testing.assert_array_equal(blocks, expected["quantized.blocks"])
        # Neighbouring tensors lie where the file put them, in one shard.
        assert not np.shares_memory(arr, bias)
    assert not lease.open


def test_after_the_block_tensors_raise_and_arrays_taken_inside_stay_valid(manager, model_file):
    path, expected, _ = model_file
    model = manager.seal_file(path)
    with manager.lease(model) as lease:
        tensor = lease.tensors()["encoder.weight"]
        arr = tensor.numpy()
    with pytest.raises(vr.UsageError, match="lease has ended"):
        tensor.numpy()
    with pytest.raises(vr.UsageError):
        tensor.__dlpack_device__()
    with pytest.raises(vr.UsageError, match="ended"):
        lease.tensors()
    # The array still reads the shard (kept alive by its base), never freed memory.
    np.testing.assert_array_equal(arr, expected["encoder.weight"])
    # A new lease reads again.
    with manager.lease(model, policy="full") as again:
        np.testing.assert_array_equal(again.tensors()["encoder.weight"].numpy(), arr)


def same_views(arrays, tensors):
    """`lease.arrays()` is `numpy()` of every tensor: same names, dtypes,
    shapes and addresses, read-only."""
    assert sorted(arrays) == sorted(tensors)
    for name, arr in arrays.items():
        one = tensors[name].numpy()
        assert (arr.dtype, arr.shape) == (one.dtype, one.shape), name
        assert arr.ctypes.data == one.ctypes.data, name
        # (An empty array shares no memory with anything.)
        assert np.shares_memory(arr, one) or arr.size == 0, name
        assert not arr.flags.writeable, name
        # The same flags and strides: C-contiguous, aligned where the
        # tensor's address is, never owning the memory.
        for flag in ("c_contiguous", "f_contiguous", "aligned", "owndata", "writeable"):
            assert getattr(arr.flags, flag) == getattr(one.flags, flag), (name, flag)
        assert arr.strides == one.strides, name
        assert not arr.flags.owndata and arr.base is not None, name
        # Nor can they be made writeable.
        with pytest.raises(ValueError):
            arr.flags.writeable = True


def test_arrays_are_every_tensor_s_view_in_one_call(manager, model_file):
    path, expected, starts = model_file
    model = manager.seal_file(path)
    with manager.lease(model, policy="sampled:1") as lease:
        arrays = lease.arrays()
        same_views(arrays, lease.tensors())
        for name, want in expected.items():
            np.testing.assert_array_equal(arrays[name], want)
        with pytest.raises(ValueError):
            arrays["encoder.weight"][0, 0] = 1.0
        # Their base is one read-only array over the shard's memory.
        bases = {id(a.base) for a in arrays.values()}
        assert len(bases) == 1
        base = arrays["encoder.weight"].base
        assert base.dtype == np.uint8 and base.ndim == 1 and not base.flags.writeable
        assert base.nbytes == model.vram_bytes
        # A second lease's arrays: the same views (the plan is the model's),
        # over that lease's base.
        with manager.lease(model) as second:
            again = second.arrays()
            same_views(again, second.tensors())
            assert again["encoder.weight"].base is not base
    with pytest.raises(vr.UsageError, match="ended"):
        lease.arrays()
    # Held past the lease and the release, they keep the shard's memory.
    size = model.vram_bytes
    model.release()
    assert manager.used_bytes() == size
    np.testing.assert_array_equal(arrays["encoder.weight"], expected["encoder.weight"])
    del arrays, base, lease, again, second
    assert manager.used_bytes() == 0


def test_arrays_of_awkward_shapes_are_numpy_s_views(manager, tmp_path):
    """A scalar, an empty tensor, a tensor of four dimensions and one that
    starts at an odd address: the same views as `numpy()` gives (aligned
    or not as NumPy computes it), read-only, each inside its shard."""
    rng = np.random.default_rng(11)
    tensors = [
        ("odd.bytes", rng.integers(0, 255, size=3, dtype=np.uint8), "U8"),
        # Starts 3 bytes into the data: not 4-byte aligned.
        ("misaligned.f32", rng.standard_normal((2, 3)).astype(np.float32), "F32"),
        ("scalar", np.asarray(np.float32(2.5)), "F32"),
        ("empty", np.zeros((0, 4), np.float16), "F16"),
        ("four.dims", rng.standard_normal((2, 1, 3, 2)).astype(np.float32), "F32"),
        ("int64", rng.integers(-9, 9, size=(5,), dtype=np.int64), "I64"),
    ]
    path = tmp_path / "awkward.safetensors"
    write_safetensors(path, tensors)
    model = manager.seal_file(path)
    with manager.lease(model, policy="full") as lease:
        arrays = lease.arrays()
        same_views(arrays, lease.tensors())
        for name, want, _ in tensors:
            assert arrays[name].shape == want.shape, name
            np.testing.assert_array_equal(arrays[name], want)
        assert arrays["scalar"].ndim == 0 and float(arrays["scalar"]) == 2.5
        assert arrays["empty"].size == 0
        # The shard's memory starts page-aligned; the header is padded to 8.
        misaligned = arrays["misaligned.f32"]
        assert misaligned.ctypes.data % 4 == 3 and not misaligned.flags.aligned


def test_arrays_see_a_corrupted_byte(manager, model_file):
    require_test_hooks()
    path, expected, starts = model_file
    model = manager.seal_file(path)
    with manager.lease(model, policy="full") as lease:
        arr = lease.arrays()["quantized.blocks"]
        manager._corrupt_latest_for_tests(starts["quantized.blocks"] + 3, 0x0F)
        assert arr[3] == expected["quantized.blocks"][3] ^ 0x0F
    with pytest.raises(vr.IntegrityError, match="quantized.blocks"):
        manager.lease(model, policy="full")


def test_end_ends_a_lease_without_a_with_block(manager, model_file):
    path, _, _ = model_file
    lease = manager.lease(manager.seal_file(path))
    tensor = lease.tensors()["encoder.bias"]
    tensor.numpy()
    lease.end()
    lease.end()
    assert not lease.open
    with pytest.raises(vr.UsageError):
        tensor.numpy()


def test_release_frees_the_memory_once_the_last_array_is_gone(manager, model_file):
    path, expected, _ = model_file
    model = manager.seal_file(path)
    size = model.vram_bytes
    assert manager.used_bytes() == size
    with manager.lease(model) as lease:
        arr = lease.tensors()["encoder.weight"].numpy()
    model.release()
    assert model.released
    model.release()  # a second call does nothing
    for call in (lambda: manager.lease(model), lambda: manager.verify(model), model.handles):
        with pytest.raises(vr.UsageError, match="released"):
            call()
    # The array holds the shard: its memory is still allocated and readable.
    assert manager.used_bytes() == size
    np.testing.assert_array_equal(arr, expected["encoder.weight"])
    del lease, arr
    assert manager.used_bytes() == 0


def test_release_without_views_frees_at_once(manager, model_file):
    path, _, _ = model_file
    model = manager.seal_file(path)
    assert manager.used_bytes() > 0
    model.release()
    assert manager.used_bytes() == 0


def test_dlpack_gives_the_same_memory_on_the_cpu(manager, model_file):
    path, expected, _ = model_file
    with manager.lease(manager.seal_file(path)) as lease:
        tensor = lease.tensors()["encoder.weight"]
        assert tensor.__dlpack_device__() == (1, 0)
        via_dlpack = np.from_dlpack(tensor)
        np.testing.assert_array_equal(via_dlpack, expected["encoder.weight"])
        assert np.shares_memory(via_dlpack, tensor.numpy())


def test_a_sharded_snapshot_is_one_model(manager, tmp_path):
    one = np.arange(4, dtype=np.float32)
    two = np.arange(6, dtype=np.int32).reshape(2, 3)
    write_safetensors(tmp_path / "model-00001-of-00002.safetensors", [("x.weight", one, "F32")])
    write_safetensors(tmp_path / "model-00002-of-00002.safetensors", [("y.weight", two, "I32")])
    (tmp_path / "model.safetensors.index.json").write_text(
        '{"metadata":{},"weight_map":{"x.weight":"model-00001-of-00002.safetensors",'
        '"y.weight":"model-00002-of-00002.safetensors"}}'
    )
    (tmp_path / "config.json").write_text("{}")
    model = manager.seal_snapshot(tmp_path)
    handles = model.handles()
    assert [h["shard_index"] for h in handles] == [0, 1]
    assert all("signature" in h for h in handles)
    manager.verify(model, policy="sampled:2")
    with manager.lease(model, policy="full") as lease:
        tensors = lease.tensors()
        np.testing.assert_array_equal(tensors["x.weight"].numpy(), one)
        np.testing.assert_array_equal(tensors["y.weight"].numpy(), two)
        # One base per shard: a view never spans two allocations.
        arrays = lease.arrays()
        same_views(arrays, tensors)
        assert arrays["x.weight"].base is not arrays["y.weight"].base
        np.testing.assert_array_equal(arrays["y.weight"], two)
    # seal() takes a directory too.
    assert manager.seal(str(tmp_path)).vram_bytes == model.vram_bytes


def test_the_scrubber_sweeps_and_stops(manager, model_file):
    path, _, _ = model_file
    model = manager.seal_file(path)
    with manager.start_scrubber(model, bytes_per_second=64 << 20) as scrubber:
        import time

        deadline = time.monotonic() + 20
        while scrubber.stats()["sweeps"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        stats = scrubber.stats()
    assert stats["sweeps"] >= 1, stats
    assert stats["failures"] == 0
    final = scrubber.stop()
    assert final["sweeps"] >= stats["sweeps"]
    with pytest.raises(vr.UsageError):
        manager.start_scrubber(model, bytes_per_second=1)


def test_help_shows_the_docstrings():
    assert "zero-copy" in vr.__doc__
    assert "verified" in vr.Manager.lease.__doc__
    assert "read-only" in vr.Tensor.numpy.__doc__
    assert "exit code 1" in vr.IntegrityError.__doc__


def four_mib_file(path):
    """A safetensors file of exactly 4 MiB (one U8 tensor after the header),
    so that its leaf counts are exact: 4 of 1 MiB, 16 of 256 KiB, 64 of
    64 KiB."""
    total = 4 << 20
    n = total - 64
    while True:
        data = np.arange(n, dtype=np.uint32).astype(np.uint8)
        starts = write_safetensors(path, [("blob", data, "U8")])
        size = path.stat().st_size
        if size == total:
            return data, starts["blob"]
        n += total - size


def test_leaf_size_sets_the_leaves_a_seal_cuts_and_a_lease_checks(tmp_path):
    path = tmp_path / "model.safetensors"
    data, start = four_mib_file(path)
    default = vr.Manager(device="mock", ephemeral_secret=True)
    assert default.verify(default.seal_file(path), policy="full")["leaves_checked"] == 64, (
        "64 KiB leaves by default, on the mock too"
    )
    big = vr.Manager(device="mock", ephemeral_secret=True, leaf_size=1 << 20)
    small = vr.Manager(device="mock", ephemeral_secret=True, leaf_size=256 * 1024)
    big_model = big.seal_file(path)
    small_model = small.seal_file(path)
    # The same bytes, four times the leaves, each a quarter of the size.
    assert big.verify(big_model, policy="full")["leaves_checked"] == 4
    full = small.verify(small_model, policy="full")
    assert full["leaves_checked"] == 16
    assert full["bytes_checked"] == 4 << 20
    # A sampled:1 lease re-reads and hashes one leaf: 256 KiB, not 1 MiB.
    with big.lease(big_model, policy="sampled:1") as lease:
        assert lease.verification["bytes_checked"] == 1 << 20
    with small.lease(small_model, policy="sampled:1") as lease:
        assert lease.verification == {
            **lease.verification,
            "leaves_checked": 1,
            "bytes_checked": 256 * 1024,
        }
        np.testing.assert_array_equal(lease.tensors()["blob"].numpy(), data)
    assert start < (4 << 20) - 1
    if vr._native.TEST_HOOKS:
        # And it is a seal like any other: a byte flipped in the last small
        # leaf is found by a full verification, which names only that
        # 256 KiB leaf's range (15 * 256 KiB .. 4 MiB).
        small._corrupt_latest_for_tests((4 << 20) - 1, 0xFF)
        with pytest.raises(vr.IntegrityError, match="1 corrupt range") as e:
            small.verify(small_model, policy="full")
        assert "bytes 3932160..4194304" in str(e.value)


@pytest.mark.parametrize("bad", [0, 1000, 2048, 3 * 4096, 1 << 31])
def test_a_leaf_size_that_is_not_a_power_of_two_from_4_kib_to_1_gib_is_refused(bad):
    with pytest.raises(vr.UsageError, match="leaf_size"):
        vr.Manager(device="mock", ephemeral_secret=True, leaf_size=bad)
