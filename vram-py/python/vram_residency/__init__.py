"""Sealed, verified model weights in GPU memory, from Python.

A ``Manager`` seals model weights on a GPU (or on the mock device, host
memory, announced on stderr when no GPU is found) under a worker secret, and
before each request grants a ``Lease`` that is verified first (a few random
leaves by default, ``policy="full"`` for all of them). Inside the lease,
``lease.tensors()`` maps each tensor name to a ``Tensor`` whose ``numpy()`` is
a zero-copy, read-only NumPy array over the sealed bytes themselves::

    import vram_residency as vr

    mgr = vr.Manager(device="auto", secret_file="worker.secret", audit_log="audit.jsonl")
    model = mgr.seal_file("model.safetensors")
    with mgr.lease(model, policy="sampled:1") as lease:
        w = lease.tensors()["layer.0.weight"].numpy()
        ...  # compute on w: no copy of the weights

The same bytes are a DLPack view (``torch.from_dlpack(t)``,
``numpy.from_dlpack(t)``), with no copy: host memory on the mock, GPU
memory on CUDA. A versioned capsule is flagged read-only (NumPy honours it;
PyTorch tensors cannot be made read-only: do not write to them).
``copy=True`` is refused: a copy would leave the seal.

What happens after a lease ends (the ``with`` block ends, or ``lease.end()``):
every ``Tensor`` method of that lease raises ``UsageError``. A NumPy array
(or DLPack view) taken inside the block stays valid: it keeps the shard's
memory alive, so it never reads freed memory, but it reads the shard's
*current* bytes, which no lease vouches for any more. Take a new lease, and
new arrays, for each request. After ``model.release()`` the model can no
longer be leased or verified; its device memory is freed when the last
lease, array or DLPack view that still holds it is gone.

Errors are ``VramError`` subclasses with the exit code the ``vram`` command
gives the same failure: ``IntegrityError`` (1: corrupt bytes, naming the
tensor and byte range; a bad seal; audit findings), ``UsageError`` (2) and
``EnvironmentError`` (3: no device, no secret, I/O).
"""

from ._native import (
    EnvironmentError,
    IntegrityError,
    Lease,
    Manager,
    Model,
    Scrubber,
    Tensor,
    UsageError,
    VramError,
    audit_verify,
)

__all__ = [
    "EnvironmentError",
    "IntegrityError",
    "Lease",
    "Manager",
    "Model",
    "Scrubber",
    "Tensor",
    "UsageError",
    "VramError",
    "audit_verify",
]
