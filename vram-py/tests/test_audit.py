"""The audit log a manager writes verifies from Python; a tampered log does not."""

import pytest

import vram_residency as vr


def test_the_audit_log_of_a_session_verifies_and_a_tampered_one_is_refused(tmp_path, secret_file, model_file):
    path, _, _ = model_file
    log = tmp_path / "audit.jsonl"
    manager = vr.Manager(device="mock", secret_file=secret_file, audit_log=log)
    model = manager.seal_file(path)
    manager.verify(model, policy="full")
    with manager.lease(model, policy="full") as lease:
        lease.tensors()
    model.release()
    verdict = vr.audit_verify(log, secret_file=secret_file)
    assert verdict["records"] >= 3
    assert verdict["files"] == 1
    assert verdict["head"]

    lines = log.read_bytes().splitlines(keepends=True)
    assert b"vram_sealed" in b"".join(lines) or b"sealed" in b"".join(lines)
    # Change one record's byte count: the MAC no longer matches.
    i = next(i for i, l in enumerate(lines) if b'"bytes":' in l)
    lines[i] = lines[i].replace(b'"bytes":', b'"bytes":1', 1)
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_bytes(b"".join(lines))
    with pytest.raises(vr.IntegrityError, match="finding"):
        vr.audit_verify(tampered, secret_file=secret_file)


def test_another_secret_does_not_verify_the_log(tmp_path, secret_file, model_file):
    import os

    path, _, _ = model_file
    log = tmp_path / "audit.jsonl"
    vr.Manager(device="mock", secret_file=secret_file, audit_log=log).seal_file(path)
    other = tmp_path / "other.secret"
    with open(os.open(other, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
        f.write(os.urandom(32))
    with pytest.raises(vr.IntegrityError):
        vr.audit_verify(log, secret_file=other)


def test_an_audit_log_needs_a_secret(tmp_path):
    with pytest.raises(vr.EnvironmentError, match="secret"):
        vr.Manager(device="mock", audit_log=tmp_path / "a.jsonl", ephemeral_secret=True)
