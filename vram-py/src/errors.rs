//! The package's exceptions: one base, `VramError`, and one subclass per
//! class of failure the `vram` command reports, with its exit code.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

use crate::worker::Failure;

create_exception!(
    vram_residency,
    VramError,
    PyException,
    "A failure of vram_residency. `exit_code` and `error_class` say which kind, as the `vram` command reports it."
);
create_exception!(
    vram_residency,
    IntegrityError,
    VramError,
    "Sealed bytes, a seal, a digest or an audit log are not what was sealed or written (exit code 1). The message names the corrupt tensor and byte range when there is one. The model must not be used."
);
create_exception!(
    vram_residency,
    UsageError,
    VramError,
    "A bad argument, or a call the object's state does not allow, such as reading a tensor after its lease ended (exit code 2)."
);
create_exception!(
    vram_residency,
    EnvironmentError,
    VramError,
    "No device, no usable secret, an unreadable file or an audit log that cannot be written (exit code 3)."
);

/// Sets `exit_code` and `error_class` on each exception class.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    for (name, class, code, word) in [
        ("VramError", py.get_type::<VramError>(), 3u8, "environment"),
        (
            "IntegrityError",
            py.get_type::<IntegrityError>(),
            1,
            "integrity",
        ),
        ("UsageError", py.get_type::<UsageError>(), 2, "usage"),
        (
            "EnvironmentError",
            py.get_type::<EnvironmentError>(),
            3,
            "environment",
        ),
    ] {
        class.setattr("exit_code", code)?;
        class.setattr("error_class", word)?;
        m.add(name, class)?;
    }
    Ok(())
}

impl From<Failure> for PyErr {
    fn from(f: Failure) -> Self {
        match f.code {
            1 => IntegrityError::new_err(f.message),
            2 => UsageError::new_err(f.message),
            _ => EnvironmentError::new_err(f.message),
        }
    }
}
