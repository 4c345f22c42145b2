"""DLPack export (`Tensor.__dlpack__`, `__dlpack_device__`): zero-copy views
of the sealed memory, the capsule protocol (legacy and versioned, consumed or
dropped), what a view reads after its lease and after `release()`, and the
dtypes, shapes and strides it describes.

The capsules are read back with ctypes through structs declared here from
dlpack.h v1.0, independently of the Rust ones. PyTorch is used when it is
installed (CI does not install it: the torch checks then say so loudly). On
this suite's mock device the memory is host memory; the CUDA export is
exercised only where `Manager(device="cuda")` finds a GPU."""

import ctypes
import gc
import importlib.util
import itertools
import os
import struct
import sys
import warnings

import numpy as np
import pytest

import vram_residency as vr
from conftest import require_test_hooks, write_safetensors

KDL_CPU, KDL_CUDA = 1, 2
KDL_INT, KDL_UINT, KDL_FLOAT, KDL_BFLOAT = 0, 1, 2, 4
READ_ONLY = 1


# dlpack.h v1.0, as C lays it out (ctypes follows the platform's C ABI).
class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


class DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p)]


class DLPackVersion(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32)]


class DLManagedTensorVersioned(ctypes.Structure):
    _fields_ = [
        ("version", DLPackVersion),
        ("manager_ctx", ctypes.c_void_p),
        ("deleter", ctypes.c_void_p),
        ("flags", ctypes.c_uint64),
        ("dl_tensor", DLTensor),
    ]


_get_name = ctypes.pythonapi.PyCapsule_GetName
_get_name.restype = ctypes.c_char_p
_get_name.argtypes = [ctypes.py_object]
_get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_get_pointer.restype = ctypes.c_void_p
_get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def capsule_name(capsule):
    return _get_name(capsule).decode()


def decode(capsule):
    """What an unconsumed capsule describes, read with ctypes."""
    name = capsule_name(capsule)
    pointer = _get_pointer(capsule, name.encode())
    if name == "dltensor_versioned":
        managed = DLManagedTensorVersioned.from_address(pointer)
        version, flags = (managed.version.major, managed.version.minor), managed.flags
    else:
        assert name == "dltensor", name
        managed = DLManagedTensor.from_address(pointer)
        version, flags = None, None
    t = managed.dl_tensor
    return {
        "name": name,
        "version": version,
        "flags": flags,
        "data": t.data or 0,
        "device": (t.device.device_type, t.device.device_id),
        "dtype": (t.dtype.code, t.dtype.bits, t.dtype.lanes),
        "shape": tuple(t.shape[i] for i in range(t.ndim)),
        "strides": tuple(t.strides[i] for i in range(t.ndim)),
        "byte_offset": t.byte_offset,
    }


class Capsule:
    """An exporter that hands a consumer one capsule made beforehand."""

    def __init__(self, capsule, device):
        self.capsule, self.device = capsule, device

    def __dlpack__(self, **_):
        return self.capsule

    def __dlpack_device__(self):
        return self.device


def alive():
    gc.collect()
    return vr._native._dlpack_exports_alive()


def torch_or_none():
    if importlib.util.find_spec("torch") is None:
        message = ("NOT RUN: torch is not installed: torch.from_dlpack is not checked "
                   "(numpy.from_dlpack is)")
        print(f"\n*** {message} ***", file=sys.stderr)
        warnings.warn(message)
        return None
    import torch

    return torch


def test_the_structs_declared_here_have_dlpack_h_sizes():
    # The same sizes the Rust layout test checks, from the C compiler's side.
    assert ctypes.sizeof(DLTensor) == 48
    assert ctypes.sizeof(DLManagedTensor) == 64
    assert ctypes.sizeof(DLManagedTensorVersioned) == 80
    assert DLManagedTensorVersioned.dl_tensor.offset == 32


def test_from_dlpack_shares_the_sealed_memory_read_only(manager, model_file):
    path, expected, _ = model_file
    with manager.lease(manager.seal_file(path)) as lease:
        tensor = lease.tensors()["encoder.weight"]
        assert tensor.__dlpack_device__() == (KDL_CPU, 0)
        arr = np.from_dlpack(tensor)
        assert arr.dtype == np.float32 and arr.shape == (16, 8)
        np.testing.assert_array_equal(arr, expected["encoder.weight"])
        view = tensor.numpy()
        assert np.shares_memory(arr, view)
        assert arr.ctypes.data == view.ctypes.data
        assert not arr.flags.writeable
        with pytest.raises(ValueError):
            arr[0, 0] = 1.0
        # Through a legacy capsule too: NumPy makes such an array read-only.
        legacy = np.from_dlpack(Capsule(tensor.__dlpack__(), (KDL_CPU, 0)))
        assert np.shares_memory(legacy, view) and not legacy.flags.writeable


def test_a_corrupted_byte_shows_in_the_dlpack_view(manager, model_file):
    require_test_hooks()
    path, expected, starts = model_file
    with manager.lease(manager.seal_file(path)) as lease:
        arr = np.from_dlpack(lease.tensors()["encoder.weight"])
        before = arr.view(np.uint8).flat[0]
        manager._corrupt_latest_for_tests(starts["encoder.weight"], 0x01)
        assert arr.view(np.uint8).flat[0] == before ^ 0x01
        assert arr.flat[0] != expected["encoder.weight"].flat[0]


# NumPy 2.1 consumes versioned capsules and takes `copy=`/`device=` in
# `from_dlpack`; older NumPy (the package allows 1.22 on) only legacy ones.
NUMPY_DLPACK_1 = tuple(int(x) for x in np.__version__.split(".")[:2]) >= (2, 1)


def numpy_cannot(what):
    print(
        f"\n*** NOT RUN: numpy {np.__version__} (< 2.1) cannot {what}; "
        "the producer's side is checked ***",
        file=sys.stderr,
    )


def test_legacy_and_versioned_capsules(manager, model_file):
    path, expected, _ = model_file
    with manager.lease(manager.seal_file(path)) as lease:
        tensor = lease.tensors()["encoder.weight"]
        address = tensor.numpy().ctypes.data
        for max_version, name, version, flags in [
            (None, "dltensor", None, None),
            ((0, 8), "dltensor", None, None),
            ((1, 0), "dltensor_versioned", (1, 0), READ_ONLY),
            ((1, 3), "dltensor_versioned", (1, 0), READ_ONLY),
        ]:
            capsule = tensor.__dlpack__(max_version=max_version)
            got = decode(capsule)
            assert (got["name"], got["version"], got["flags"]) == (name, version, flags)
            assert got["data"] == address and got["byte_offset"] == 0
            assert got["device"] == (KDL_CPU, 0)
            assert (got["dtype"], got["shape"], got["strides"]) == ((KDL_FLOAT, 32, 1), (16, 8), (8, 1))
            if name == "dltensor_versioned" and not NUMPY_DLPACK_1:
                numpy_cannot("consume a versioned DLPack capsule")
                continue
            # Consuming renames the capsule; the consumer then owns the tensor.
            arr = np.from_dlpack(Capsule(capsule, (KDL_CPU, 0)))
            assert capsule_name(capsule) == "used_" + name
            np.testing.assert_array_equal(arr, expected["encoder.weight"])
            with pytest.raises(ValueError, match="incorrect name"):
                np.from_dlpack(Capsule(capsule, (KDL_CPU, 0)))  # consumed once only


def test_copies_other_devices_and_streams_are_refused(manager, model_file):
    path, _, _ = model_file
    with manager.lease(manager.seal_file(path)) as lease:
        tensor = lease.tensors()["encoder.bias"]
        with pytest.raises(BufferError, match="copy=True"):
            tensor.__dlpack__(copy=True)
        if NUMPY_DLPACK_1:
            with pytest.raises(BufferError, match="copy=True"):
                np.from_dlpack(tensor, copy=True)
        else:
            numpy_cannot("pass copy=True to from_dlpack")
        with pytest.raises(BufferError, match="dl_device"):
            tensor.__dlpack__(dl_device=(KDL_CUDA, 0))
        with pytest.raises(ValueError, match="stream"):
            tensor.__dlpack__(stream=1)
        with pytest.raises(TypeError):
            tensor.__dlpack__((1, 0))  # keyword-only, as the standard has it
        # What is allowed: no copy, its own device, no stream.
        for kwargs in ({"copy": False}, {"dl_device": (KDL_CPU, 0)}, {"stream": None}):
            assert decode(tensor.__dlpack__(**kwargs))["device"] == (KDL_CPU, 0)
        if NUMPY_DLPACK_1:
            assert np.from_dlpack(tensor, copy=False, device="cpu").shape == (8,)
        else:
            assert np.from_dlpack(tensor).shape == (8,)


def test_after_the_block_dlpack_raises_and_a_view_taken_inside_stays_valid(manager, model_file):
    require_test_hooks()
    path, expected, starts = model_file
    model = manager.seal_file(path)
    size = model.vram_bytes
    base = alive()
    with manager.lease(model) as lease:
        tensor = lease.tensors()["encoder.weight"]
        arr = np.from_dlpack(tensor)
        assert alive() == base + 1
    with pytest.raises(vr.UsageError, match="lease has ended"):
        tensor.__dlpack__()
    with pytest.raises(vr.UsageError, match="lease has ended"):
        tensor.__dlpack__(max_version=(1, 0))
    with pytest.raises(vr.UsageError):
        np.from_dlpack(tensor)
    # After the block: the view reads the shard, kept allocated by its export.
    np.testing.assert_array_equal(arr, expected["encoder.weight"])
    del lease, tensor
    model.release()
    # After release(): still allocated (the view holds the shard), still readable.
    assert manager.used_bytes() == size
    np.testing.assert_array_equal(arr, expected["encoder.weight"])
    # What it reads is the shard's current bytes, which no lease vouches for:
    # a byte changed now shows in it, and nothing verifies it.
    manager._corrupt_latest_for_tests(starts["encoder.weight"], 0x80)
    original = expected["encoder.weight"].view(np.uint8).flat[0]
    assert arr.view(np.uint8).flat[0] == original ^ 0x80
    del arr
    assert alive() == base
    assert manager.used_bytes() == 0


def test_an_unconsumed_capsule_frees_what_it_keeps(manager, model_file):
    path, _, _ = model_file
    model = manager.seal_file(path)
    size = model.vram_bytes
    base = alive()
    with manager.lease(model) as lease:
        legacy = lease.tensors()["encoder.weight"].__dlpack__()
        versioned = lease.tensors()["encoder.bias"].__dlpack__(max_version=(1, 0))
        assert alive() == base + 2
    del lease  # an ended lease object still holds the shard, as a view does
    model.release()
    # The capsules hold the shard: its memory stays allocated...
    assert manager.used_bytes() == size
    del legacy
    assert alive() == base + 1
    assert manager.used_bytes() == size
    # ...until the last of them is dropped, never consumed: its destructor
    # called the deleter, which freed the managed tensor and the keep.
    del versioned
    assert alive() == base
    assert manager.used_bytes() == 0


@pytest.mark.parametrize(
    "order", list(itertools.permutations(["end lease", "release", "drop capsule", "drop array"]))
)
def test_no_order_of_endings_reads_freed_memory(manager, model_file, order):
    path, expected, _ = model_file
    want = expected["encoder.weight"]
    model = manager.seal_file(path)
    base = alive()
    state = {"lease": manager.lease(model)}
    tensor = state["lease"].tensors()["encoder.weight"]
    state["capsule"] = tensor.__dlpack__(max_version=(1, 0))
    state["array"] = np.from_dlpack(tensor)
    del tensor
    for step in order:
        if step == "end lease":
            state.pop("lease").end()
        elif step == "release":
            model.release()
        elif step == "drop capsule":
            del state["capsule"]
        else:
            del state["array"]
        gc.collect()
        if "array" in state:
            np.testing.assert_array_equal(state["array"], want)
        if "capsule" in state:
            # What the unconsumed capsule describes is still allocated.
            got = decode(state["capsule"])
            assert ctypes.string_at(got["data"], want.nbytes) == want.tobytes()
    state.clear()
    assert alive() == base
    assert manager.used_bytes() == 0


def write_gguf(path, tensors, alignment=32):
    """A GGUF v3 file (no metadata) with `tensors`: (name, ggml dims
    innermost first, ggml type id, data bytes). Returns the data start."""
    def string(s):
        b = s.encode()
        return struct.pack("<Q", len(b)) + b

    def align(n):
        return (n + alignment - 1) // alignment * alignment

    infos, blobs, offset = b"", b"", 0
    for name, dims, ggml_type, data in tensors:
        offset = align(offset)
        blobs += b"\0" * (offset - len(blobs)) + data
        infos += string(name) + struct.pack("<I", len(dims))
        infos += b"".join(struct.pack("<Q", d) for d in dims)
        infos += struct.pack("<IQ", ggml_type, offset)
        offset += len(data)
    header = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), 0) + infos
    start = align(len(header))
    with open(path, "wb") as f:
        f.write(header + b"\0" * (start - len(header)) + blobs)
    return start


def test_dtypes_and_strides(manager, tmp_path):
    rng = np.random.default_rng(11)
    f32 = rng.standard_normal((3, 4, 5)).astype(np.float32)
    f16 = rng.standard_normal((6, 2)).astype(np.float16)
    bf16 = (rng.standard_normal((4, 3)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    i64 = np.arange(5, dtype=np.int64) - 2
    path = tmp_path / "types.safetensors"
    write_safetensors(path, [("f32", f32, "F32"), ("f16", f16, "F16"), ("bf16", bf16, "BF16"),
                             ("i64", i64, "I64")])
    with manager.lease(manager.seal_file(path)) as lease:
        t = lease.tensors()
        for name, dtype, shape, strides in [
            ("f32", (KDL_FLOAT, 32, 1), (3, 4, 5), (20, 5, 1)),
            ("f16", (KDL_FLOAT, 16, 1), (6, 2), (2, 1)),
            ("bf16", (KDL_BFLOAT, 16, 1), (4, 3), (3, 1)),
            ("i64", (KDL_INT, 64, 1), (5,), (1,)),
        ]:
            got = decode(t[name].__dlpack__(max_version=(1, 0)))
            assert (got["dtype"], got["shape"], got["strides"]) == (dtype, shape, strides), name
            assert t[name].ggml_type is None
        np.testing.assert_array_equal(np.from_dlpack(t["f32"]), f32)
        np.testing.assert_array_equal(np.from_dlpack(t["f16"]), f16)
        np.testing.assert_array_equal(np.from_dlpack(t["i64"]), i64)
        # NumPy has no bfloat16: it refuses the type DLPack names exactly
        # (numpy() shows its bits as uint16 instead).
        with pytest.raises((BufferError, RuntimeError), match="dtype"):
            np.from_dlpack(t["bf16"])
        np.testing.assert_array_equal(t["bf16"].numpy(), bf16)


def test_a_q8_0_gguf_tensor_is_its_raw_bytes_with_the_ggml_type_named(manager, tmp_path):
    rng = np.random.default_rng(5)
    q8 = rng.integers(0, 256, size=4 * 34, dtype=np.uint8).tobytes()  # 4 blocks of 32
    f32 = rng.standard_normal((2, 8)).astype(np.float32)  # ggml dims (8, 2)
    f16 = rng.standard_normal(4).astype(np.float16)
    path = tmp_path / "tiny.gguf"
    write_gguf(path, [("blk.0.f32", [8, 2], 0, f32.tobytes()),
                      ("blk.0.q8", [64, 2], 8, q8),
                      ("blk.0.f16", [4], 1, f16.tobytes())])
    with manager.lease(manager.seal_file(path)) as lease:
        t = lease.tensors()
        q = t["blk.0.q8"]
        assert (q.dtype, q.ggml_type, q.shape) == ("Q8_0", "Q8_0", (64, 2))
        got = decode(q.__dlpack__(max_version=(1, 0)))
        assert (got["dtype"], got["shape"], got["strides"]) == ((KDL_UINT, 8, 1), (136,), (1,))
        raw = np.from_dlpack(q)
        assert raw.dtype == np.uint8 and raw.tobytes() == q8
        assert np.shares_memory(raw, q.numpy())
        # Plain GGUF types are typed, their dimensions row-major (ggml's reversed).
        w = t["blk.0.f32"]
        assert (w.ggml_type, w.shape) == ("F32", (8, 2))
        got = decode(w.__dlpack__(max_version=(1, 0)))
        assert (got["dtype"], got["shape"], got["strides"]) == ((KDL_FLOAT, 32, 1), (2, 8), (8, 1))
        np.testing.assert_array_equal(np.from_dlpack(w), f32)
        np.testing.assert_array_equal(w.numpy(), f32)
        np.testing.assert_array_equal(np.from_dlpack(t["blk.0.f16"]), f16)
        # lease.arrays(): the same views, quantized blocks as raw bytes.
        arrays = lease.arrays()
        assert sorted(arrays) == sorted(t)
        for name, arr in arrays.items():
            one = t[name].numpy()
            assert (arr.dtype, arr.shape, arr.ctypes.data) == (one.dtype, one.shape, one.ctypes.data)
        assert arrays["blk.0.q8"].tobytes() == q8
        np.testing.assert_array_equal(arrays["blk.0.f32"], f32)


def test_torch_from_dlpack_shares_the_memory(manager, model_file):
    torch = torch_or_none()
    if torch is None:
        return
    path, expected, _ = model_file
    with manager.lease(manager.seal_file(path)) as lease:
        t = lease.tensors()
        w = torch.from_dlpack(t["encoder.weight"])
        assert w.dtype == torch.float32 and tuple(w.shape) == (16, 8) and w.stride() == (8, 1)
        assert w.data_ptr() == t["encoder.weight"].numpy().ctypes.data
        np.testing.assert_array_equal(w.numpy(), expected["encoder.weight"])
        assert torch.from_dlpack(t["encoder.bias"]).dtype == torch.float16
        bf = torch.from_dlpack(t["head.weight"])
        assert bf.dtype == torch.bfloat16
        np.testing.assert_array_equal(bf.view(torch.int16).numpy().view(np.uint16), expected["head.weight"])
        assert torch.from_dlpack(t["quantized.blocks"]).dtype == torch.uint8
    np.testing.assert_array_equal(w.numpy(), expected["encoder.weight"])


def cuda_manager_or_none():
    """A manager on the first CUDA device, or None after saying NOT RUN (a
    failure under `VRAM_RESIDENCY_REQUIRE_CUDA=1`, as on the GPU machine:
    `cargo xtask gpu` runs this suite there)."""
    try:
        return vr.Manager(device="cuda", ephemeral_secret=True)
    except vr.EnvironmentError as e:
        if os.environ.get("VRAM_RESIDENCY_REQUIRE_CUDA") == "1":
            pytest.fail(f"VRAM_RESIDENCY_REQUIRE_CUDA=1 but no CUDA device: {e}")
        message = f"NOT RUN: the CUDA DLPack export is not exercised: no CUDA device ({e})"
        print(f"\n*** {message} ***", file=sys.stderr)
        warnings.warn(message)
        return None


def test_cuda_export_where_a_gpu_is_found(model_file):
    """On a GPU: every dtype's capsule names the CUDA device and the sealed
    bytes' device address; NumPy views and `arrays()` are refused (GPU
    memory); with PyTorch on CUDA, each tensor is the sealed memory itself
    (its `data_ptr` is the capsule's address), holds the file's values, and
    a matrix product computed on it equals NumPy's; after the lease the
    export is refused and a view already taken still reads the bytes."""
    manager = cuda_manager_or_none()
    if manager is None:
        return
    path, expected, _ = model_file
    model = manager.seal_file(path)
    with manager.lease(model) as lease:
        t = lease.tensors()
        tensor = t["encoder.weight"]
        device = tensor.__dlpack_device__()
        assert device[0] == KDL_CUDA
        got = decode(tensor.__dlpack__(max_version=(1, 0), stream=1))
        assert got["device"] == device and got["flags"] == READ_ONLY
        assert (got["dtype"], got["shape"], got["strides"]) == ((KDL_FLOAT, 32, 1), (16, 8), (8, 1))
        assert got["data"] != 0
        addresses = {
            name: (lambda d: d["data"] + d["byte_offset"])(decode(t[name].__dlpack__(max_version=(1, 0))))
            for name in t
        }
        for name, want in [("encoder.bias", (KDL_FLOAT, 16, 1)), ("head.weight", (KDL_BFLOAT, 16, 1)),
                           ("quantized.blocks", (KDL_UINT, 8, 1))]:
            assert decode(t[name].__dlpack__(max_version=(1, 0)))["dtype"] == want, name
        with pytest.raises(vr.UsageError, match="GPU memory"):
            tensor.numpy()
        with pytest.raises(vr.UsageError, match="GPU memory"):
            lease.arrays()
        with pytest.raises(BufferError):
            tensor.__dlpack__(dl_device=(KDL_CPU, 0))
        torch = torch_or_none()
        if torch is None or not torch.cuda.is_available():
            if os.environ.get("VRAM_RESIDENCY_REQUIRE_CUDA") == "1":
                pytest.fail("VRAM_RESIDENCY_REQUIRE_CUDA=1 but PyTorch cannot use CUDA")
            message = "NOT RUN: torch.from_dlpack on CUDA (PyTorch with CUDA not installed)"
            print(f"\n*** {message} ***", file=sys.stderr)
            warnings.warn(message)
            return
        views = {name: torch.from_dlpack(t[name]) for name in t}
        for name, view in views.items():
            assert view.device.type == "cuda" and view.device.index == device[1], name
            assert view.data_ptr() == addresses[name], f"{name}: a copy, not the sealed memory"
        np.testing.assert_array_equal(views["encoder.weight"].cpu().numpy(), expected["encoder.weight"])
        np.testing.assert_array_equal(views["encoder.bias"].cpu().numpy(), expected["encoder.bias"])
        assert views["head.weight"].dtype == torch.bfloat16
        np.testing.assert_array_equal(
            views["head.weight"].view(torch.int16).cpu().numpy().view(np.uint16), expected["head.weight"]
        )
        np.testing.assert_array_equal(views["quantized.blocks"].cpu().numpy(), expected["quantized.blocks"])
        # Computed on the sealed memory in place.
        x = np.random.default_rng(3).standard_normal((4, 16)).astype(np.float32)
        y = (torch.from_numpy(x).cuda() @ views["encoder.weight"]).cpu().numpy()
        np.testing.assert_allclose(y, x @ expected["encoder.weight"], rtol=1e-4, atol=1e-4)
        kept = views["encoder.weight"]
    with pytest.raises(vr.UsageError):
        tensor.__dlpack__(max_version=(1, 0))
    # Documented: a view kept past its lease reads the shard's current bytes.
    np.testing.assert_array_equal(kept.cpu().numpy(), expected["encoder.weight"])
    del views, kept
    model.release()


def test_cuda_lease_and_views_cost_from_python(model_file):
    """On a GPU, what `cargo xtask gpu` prints: a `sampled:1` lease from
    Python (p50 of 200) and `torch.from_dlpack` of a tensor (p50 of 200),
    the CUDA counterparts of `examples/lease_cost.py`'s figures. Checks
    nothing about time (tests never do); NOT RUN without a GPU."""
    manager = cuda_manager_or_none()
    if manager is None:
        return
    import time

    path, _, _ = model_file
    model = manager.seal_file(path)
    leases, exports = [], []
    torch = torch_or_none()
    for _ in range(200):
        start = time.perf_counter()
        lease = manager.lease(model, policy="sampled:1")
        leases.append(time.perf_counter() - start)
        tensor = lease.tensors()["encoder.weight"]
        if torch and torch.cuda.is_available():
            start = time.perf_counter()
            view = torch.from_dlpack(tensor)
            exports.append(time.perf_counter() - start)
            del view
        lease.end()
    line = f"CUDA from Python: sampled:1 lease p50 {np.median(leases) * 1e6:.1f} us"
    if exports:
        line += f", torch.from_dlpack p50 {np.median(exports) * 1e6:.1f} us a tensor"
    print(f"\n{line} ({len(leases)} each)", file=sys.stderr)
    model.release()


def test_help_shows_the_dlpack_docstrings():
    doc = vr.Tensor.__dlpack__.__doc__
    assert "read-only" in doc and "copy=True" in doc and "release()" in doc
    assert "kDLCUDA" in vr.Tensor.__dlpack_device__.__doc__
    assert "ggml" in vr.Tensor.ggml_type.__doc__


def test_the_stubs_give_dlpack_the_runtime_signature():
    import ast
    import inspect
    import pathlib

    stubs = pathlib.Path(vr.__file__).with_name("__init__.pyi")
    tree = ast.parse(stubs.read_text())
    tensor = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Tensor")
    methods = {f.name: f for f in tensor.body if isinstance(f, ast.FunctionDef)}
    stub = methods["__dlpack__"].args
    runtime = inspect.signature(vr.Tensor.__dlpack__).parameters
    keyword_only = [n for n, p in runtime.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    assert [a.arg for a in stub.kwonlyargs] == keyword_only == [
        "stream", "max_version", "dl_device", "copy"]
    assert {"ggml_type", "__dlpack_device__", "numpy"} <= set(methods)
    assert all(hasattr(vr.Tensor, name) for name in methods)
