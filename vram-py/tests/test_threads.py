"""Leases and verifications from several Python threads at once, with the
GIL released while Rust verifies."""

import sys
import threading

import numpy as np
import pytest

from conftest import write_safetensors


def test_leases_and_verifications_from_many_threads(manager, model_file):
    path, expected, _ = model_file
    model = manager.seal_file(path)
    errors = []

    def work(i):
        try:
            for _ in range(25):
                if i % 2:
                    manager.verify(model, policy="full")
                with manager.lease(model, policy="sampled:1") as lease:
                    arr = lease.tensors()["encoder.weight"].numpy()
                    np.testing.assert_array_equal(arr, expected["encoder.weight"])
                    # The model's view plan, built by whichever thread
                    # comes first, serves every thread's lease.
                    arrays = lease.arrays()
                    for name, want in expected.items():
                        np.testing.assert_array_equal(arrays[name], want)
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert not model.compromised


@pytest.mark.parametrize("call", ["verify", "lease"])
def test_the_gil_is_released_while_rust_verifies(manager, tmp_path, call):
    """Another Python thread runs while a verification is inside Rust.

    A profile hook on the calling thread counts entries (`c_call`) and
    returns (`c_return`) of the native method. The switch interval is made
    so long that the interpreter never takes the GIL from a running thread:
    the main thread runs only when the calling thread gives the GIL up
    itself. Holding the GIL in Rust, the caller would run all its calls
    through and the main thread would never see a call entered and not
    returned; releasing it, the main thread runs during the call.
    """
    big = np.arange(8 << 20, dtype=np.uint8)  # 8 MiB
    write_safetensors(tmp_path / "big.safetensors", [("big", big, "U8")])
    model = manager.seal_file(tmp_path / "big.safetensors")
    state = {"entered": 0, "returned": 0, "seen_inside": False, "stop": False}

    def hook(frame, event, arg):
        if getattr(arg, "__name__", None) == call:
            if event == "c_call":
                state["entered"] += 1
            elif event == "c_return":
                state["returned"] += 1

    def caller():
        sys.setprofile(hook)
        try:
            for _ in range(50):
                if state["stop"]:
                    break
                if call == "verify":
                    manager.verify(model, policy="full")
                else:
                    manager.lease(model, policy="full").end()
        finally:
            sys.setprofile(None)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(60.0)
    try:
        t = threading.Thread(target=caller)
        t.start()
        while t.is_alive():
            if state["entered"] > state["returned"]:
                state["seen_inside"] = True
                state["stop"] = True
                break
        t.join(timeout=120)
    finally:
        sys.setswitchinterval(interval)
    assert state["seen_inside"], state
