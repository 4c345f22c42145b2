//! `vram_residency`, the Python package: seal model weights on a GPU (or the
//! mock device), take verified leases before each request, read tensors as
//! zero-copy NumPy and DLPack views, verify the audit log. A thin layer
//! over the facade (`vram-residency`): every call into it is in
//! `worker.rs`; this file holds the Python classes, `view.rs` the NumPy
//! views, `ndview.rs` the views `Lease.arrays()` makes through NumPy's C
//! API, `dlpack.rs` the DLPack export, `errors.rs` the exceptions.
//!
//! Unsafe code is denied here and allowed in `dlpack.rs` (the DLPack C
//! structs and the capsule protocol) and `ndview.rs` (NumPy's array
//! constructor) only, as docs/ARCHITECTURE.md says.

#![deny(unsafe_code)]

#[allow(unsafe_code)]
mod dlpack;
mod errors;
#[allow(unsafe_code)]
mod ndview;
mod view;
mod worker;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::dlpack::Protocol;
use crate::worker::{Cost, Dtype, Failure, Leased, ScrubStats, Sealed, TensorHandle};

/// A worker: one device (`"auto"`: the GPUs, else the mock, announced on
/// stderr; `"mock"`; `"cuda"`; `"cuda:N"`), a worker secret and an optional
/// audit log, as the `vram` command builds them.
///
/// `secret_file` names the worker secret (an owner-only file of at least 32
/// bytes); without it the systemd credential `vram-worker-secret` or
/// `$VRAM_SECRET_FILE` is used. With none of them, `ephemeral_secret=True`
/// lets the manager generate one for this process only; otherwise
/// `EnvironmentError`. An `audit_log` needs a secret (its key derives from it).
///
/// `leaf_size` (bytes, a power of two from 4096 to 1 GiB; as `vram seal
/// --leaf-size`) is the size of the leaves this manager's seals cut models
/// into; `None` keeps the default, 64 KiB on every device (as `vram-serve`
/// and `vram-embed`; `vram seal` cuts 1 MiB leaves on the mock). A
/// `"sampled:K"` lease re-reads and hashes K leaves, so its cost is about
/// K leaf sizes of hashing, and its chance to catch one corrupt leaf is K
/// in the model's leaf count: smaller leaves make a lease cheaper and each
/// one check less of the model (a scrubber's sweep covers all of it either
/// way). Anything else raises `UsageError`.
///
/// Seals, verifications and leases release the GIL: several Python threads
/// can lease and verify at once.
#[pyclass(frozen, module = "vram_residency")]
struct Manager {
    worker: worker::Worker,
}

fn cost_dict<'py>(py: Python<'py>, cost: Cost) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("leaves_checked", cost.leaves)?;
    d.set_item("bytes_checked", cost.bytes)?;
    d.set_item("seconds", cost.elapsed.as_secs_f64())?;
    Ok(d)
}

fn stats_dict<'py>(py: Python<'py>, s: ScrubStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("sweeps", s.sweeps)?;
    d.set_item("leaves_checked", s.leaves_checked)?;
    d.set_item("seal_checks", s.seal_checks)?;
    d.set_item("bytes_scrubbed", s.bytes_scrubbed)?;
    d.set_item("failures", s.failures)?;
    d.set_item("last_sweep_unix_ms", s.last_sweep_unix_ms)?;
    Ok(d)
}

#[pymethods]
impl Manager {
    #[new]
    #[pyo3(signature = (device = "auto", secret_file = None, audit_log = None, ephemeral_secret = false, leaf_size = None))]
    fn new(
        py: Python<'_>,
        device: &str,
        secret_file: Option<PathBuf>,
        audit_log: Option<PathBuf>,
        ephemeral_secret: bool,
        leaf_size: Option<u64>,
    ) -> PyResult<Self> {
        let worker = py.detach(|| {
            worker::Worker::open(device, secret_file, audit_log, ephemeral_secret, leaf_size)
        })?;
        Ok(Self { worker })
    }

    /// `"mock"` or `"cuda"`: where sealed bytes lie.
    #[getter]
    fn device_kind(&self) -> &'static str {
        self.worker.device_kind()
    }

    /// Bytes sealed on device `device` (0 by default) and not yet freed:
    /// shards of released models that a lease or a NumPy array still holds
    /// count until the last holder is gone.
    #[pyo3(signature = (device = 0))]
    fn used_bytes(&self, device: u32) -> u64 {
        self.worker.used_bytes(device)
    }

    /// Seals one weights file (`.safetensors` or `.gguf`) as one model of
    /// one shard. Raises `IntegrityError`, `UsageError` or `EnvironmentError`.
    fn seal_file(&self, py: Python<'_>, path: PathBuf) -> PyResult<Model> {
        let sealed = py.detach(|| self.worker.seal_file(&path))?;
        Ok(Model::new(sealed))
    }

    /// Seals a snapshot directory (`model.safetensors` or the shards its
    /// index names, with `config.json`, the tokenizer and modules bound to
    /// the seals) as one model.
    fn seal_snapshot(&self, py: Python<'_>, path: PathBuf) -> PyResult<Model> {
        let text = path.to_string_lossy().into_owned();
        let sealed = py.detach(|| self.worker.seal_snapshot(&text))?;
        Ok(Model::new(sealed))
    }

    /// Seals `"hf://ORG/NAME[@REV]"` from the local Hugging Face cache
    /// (offline; every file checked against the digest its blob name
    /// promises), a snapshot directory, or a single weights file.
    fn seal(&self, py: Python<'_>, model: &str) -> PyResult<Model> {
        let path = PathBuf::from(model);
        let sealed = if !model.starts_with("hf://") && path.is_file() {
            py.detach(|| self.worker.seal_file(&path))?
        } else {
            py.detach(|| self.worker.seal_snapshot(model))?
        };
        Ok(Model::new(sealed))
    }

    /// Re-reads the model's bytes from device memory and checks them against
    /// the seals: `policy` is `"full"` (every leaf) or `"sampled:K"` (K
    /// random leaves per shard). Returns `{"leaves_checked", "bytes_checked",
    /// "seconds"}`; raises `IntegrityError` naming the corrupt tensor and
    /// bytes (the model is then compromised for good).
    #[pyo3(signature = (model, policy = "full"))]
    fn verify<'py>(
        &self,
        py: Python<'py>,
        model: &Model,
        policy: &str,
    ) -> PyResult<Bound<'py, PyDict>> {
        let sealed = model.sealed()?;
        let cost = py.detach(|| self.worker.verify(&sealed, policy))?;
        cost_dict(py, cost)
    }

    /// A verified lease on `model`, for one request: verified under
    /// `policy` (`"sampled:K"`, `"full"` or `"recent:SECONDS:K"`) before
    /// this returns, refused with `IntegrityError` naming the tensor when a
    /// byte differs. Use it as a context manager (`with mgr.lease(m) as
    /// lease:`); the lease ends when the block does.
    #[pyo3(signature = (model, policy = "sampled:1"))]
    fn lease(&self, py: Python<'_>, model: &Model, policy: &str) -> PyResult<Lease> {
        let sealed = model.sealed()?;
        let leased = py.detach(|| self.worker.lease(&sealed, policy))?;
        Ok(Lease {
            leased: Arc::new(leased),
            policy: policy.to_owned(),
            views: Arc::clone(&model.views),
        })
    }

    /// Starts a background scrubber that re-reads every leaf of `model` at
    /// most `bytes_per_second` (at least 1 MiB/s), in a random order. Stop it
    /// with `stop()` (or use it as a context manager).
    #[pyo3(signature = (model, bytes_per_second = 64 * 1024 * 1024))]
    fn start_scrubber(&self, model: &Model, bytes_per_second: u64) -> PyResult<Scrubber> {
        let sealed = model.sealed()?;
        Ok(Scrubber {
            inner: self.worker.start_scrubber(&sealed, bytes_per_second)?,
        })
    }

    /// Test hook (built only with the `test-corruption` feature): flips bits
    /// `mask` of the byte at `offset` of the latest allocation, behind the
    /// seal's back.
    #[cfg(feature = "test-corruption")]
    #[pyo3(signature = (offset, mask = 1))]
    fn _corrupt_latest_for_tests(&self, py: Python<'_>, offset: u64, mask: u8) -> PyResult<()> {
        Ok(py.detach(|| self.worker.corrupt_latest(offset, mask))?)
    }

    fn __repr__(&self) -> String {
        format!(
            "<vram_residency.Manager device={}>",
            self.worker.device_kind()
        )
    }
}

/// A sealed model: its weights in device memory under this worker's seals.
/// Obtained from `Manager.seal_file`, `seal_snapshot` or `seal`.
#[pyclass(frozen, module = "vram_residency")]
struct Model {
    sealed: RwLock<Option<Sealed>>,
    /// What `Lease.arrays()` makes its views from, built at its first call
    /// on any lease of this model and kept: the tensor tables never change
    /// once sealed.
    views: Arc<OnceLock<ViewPlan>>,
}

/// Each shard's tensors as `Lease.arrays()` shows them: the name (a Python
/// string), the view's NumPy dtype and dimensions, and where its bytes
/// start in the shard's memory. Only what NumPy needs to build a view over
/// a lease's shard memory; the bytes themselves are never kept.
struct ViewPlan {
    shards: Vec<Vec<PlannedView>>,
}

struct PlannedView {
    name: Py<pyo3::types::PyString>,
    dtype: Py<numpy::PyArrayDescr>,
    dims: Vec<numpy::npyffi::npy_intp>,
    offset: usize,
}

impl ViewPlan {
    /// The plan of `leased`'s tensors (its shards in order).
    fn of(py: Python<'_>, leased: &Leased) -> PyResult<Self> {
        let mut dtypes: Vec<(&'static str, Py<numpy::PyArrayDescr>)> = Vec::new();
        let regions = leased.shard_regions()?;
        let views = leased.host_views()?;
        let mut shards = Vec::with_capacity(views.len());
        for (shard, region) in views.into_iter().zip(&regions) {
            let mut planned = Vec::with_capacity(shard.tensors.len());
            for t in shard.tensors {
                let outside = || Failure::env("a tensor outside its shard's memory");
                let offset = t.address.checked_sub(region.address).ok_or_else(outside)?;
                let end = offset.checked_add(t.len).ok_or_else(outside)?;
                if end > region.len {
                    return Err(outside().into());
                }
                let (typestr, raw) = view::numpy_type(t.dtype.name());
                let dtype = match dtypes.iter().find(|(k, _)| *k == typestr) {
                    Some((_, dt)) => dt.clone_ref(py),
                    None => {
                        let dt = ndview::dtype(py, typestr)?.unbind();
                        dtypes.push((typestr, dt.clone_ref(py)));
                        dt
                    }
                };
                let too_large = || Failure::env("a tensor too large for NumPy's dimensions");
                let dims = if raw {
                    vec![numpy::npyffi::npy_intp::try_from(t.len).map_err(|_| too_large())?]
                } else {
                    t.shape
                        .iter()
                        .map(|&d| numpy::npyffi::npy_intp::try_from(d).map_err(|_| too_large()))
                        .collect::<Result<Vec<_>, _>>()?
                };
                planned.push(PlannedView {
                    name: pyo3::types::PyString::new(py, &t.name).unbind(),
                    dtype,
                    dims,
                    offset,
                });
            }
            shards.push(planned);
        }
        Ok(Self { shards })
    }
}

impl Model {
    fn new(sealed: Sealed) -> Self {
        Self {
            sealed: RwLock::new(Some(sealed)),
            views: Arc::new(OnceLock::new()),
        }
    }

    fn sealed(&self) -> Result<Sealed, Failure> {
        self.sealed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| Failure::usage("this model was released: seal it again"))
    }
}

#[pymethods]
impl Model {
    /// The model reference recorded in the seals and the audit log.
    #[getter]
    fn model_ref(&self) -> PyResult<String> {
        Ok(self.sealed()?.model_ref())
    }

    /// Bytes in device memory, all shards.
    #[getter]
    fn vram_bytes(&self) -> PyResult<u64> {
        Ok(self.sealed()?.vram_bytes())
    }

    /// The device index the model lies on.
    #[getter]
    fn device(&self) -> PyResult<u32> {
        Ok(self.sealed()?.gpu_device())
    }

    /// Whether a verification or lease found it wrong (for good).
    #[getter]
    fn compromised(&self) -> PyResult<bool> {
        Ok(self.sealed()?.is_compromised())
    }

    /// Whether `release()` was called.
    #[getter]
    fn released(&self) -> bool {
        self.sealed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
    }

    /// Each shard's handle as a dict: every sealed field and the seal tag,
    /// no device address (what an API may hand to its clients).
    fn handles<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let json = self.sealed()?.handles_json()?;
        py.import("json")?.call_method1("loads", (json,))
    }

    /// Releases the model: it can no longer be leased or verified
    /// (`UsageError`). Its device memory is freed now, or, when a lease or a
    /// NumPy array still holds a shard, when the last of them is gone (an
    /// array never reads freed memory). A second call does nothing.
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        let taken = self
            .sealed
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match taken {
            Some(sealed) => Ok(py.detach(|| sealed.release())?),
            None => Ok(()),
        }
    }

    fn __repr__(&self) -> String {
        match self.sealed() {
            Ok(s) => format!(
                "<vram_residency.Model {:?} {} bytes>",
                s.model_ref(),
                s.vram_bytes()
            ),
            Err(_) => "<vram_residency.Model released>".into(),
        }
    }
}

/// A verified lease on a model, for one request. Its tensors are readable
/// while it is open; `end()`, or the end of its `with` block, ends it, and
/// every later `Tensor` call raises `UsageError`.
#[pyclass(frozen, module = "vram_residency")]
struct Lease {
    leased: Arc<Leased>,
    policy: String,
    /// Its model's view plan (`arrays()`).
    views: Arc<OnceLock<ViewPlan>>,
}

#[pymethods]
impl Lease {
    /// Every tensor of the leased model by name (safetensors and GGUF
    /// files).
    fn tensors<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for entry in self.leased.tensors()? {
            let name = entry.name.clone();
            let tensor = Tensor {
                name: entry.name,
                dtype: entry.dtype,
                shape: entry.shape,
                gguf: entry.gguf,
                handle: entry.handle,
            };
            d.set_item(name, Py::new(py, tensor)?)?;
        }
        Ok(d)
    }

    /// Every tensor of the leased model as a read-only NumPy array over the
    /// sealed bytes (no copy), by name: what `{n: t.numpy() for n, t in
    /// lease.tensors().items()}` gives (the same dtypes and shapes), made in
    /// one call (NumPy's C API), about 0.1 µs a tensor against 1.6 µs for
    /// `numpy()` one tensor at a time.
    ///
    /// The arrays are views of one read-only `uint8` array per shard (their
    /// `base`), which keeps the shard's memory alive, exactly as a
    /// `Tensor.numpy()` array does: after the lease ends they still read
    /// the shard's current bytes, which no lease vouches for any more. Take
    /// a new lease, and new arrays, for each request.
    ///
    /// Raises `UsageError` once the lease has ended, and on a CUDA device
    /// (GPU memory: use DLPack).
    fn arrays<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        if !self.leased.is_open() {
            return Err(Failure::usage(
                "the lease has ended: its tensors can no longer be read; take a new lease",
            )
            .into());
        }
        let plan = match self.views.get() {
            Some(plan) => plan,
            None => {
                let built = ViewPlan::of(py, &self.leased)?;
                // Another thread may have built it first: the same plan.
                let _ = self.views.set(built);
                self.views
                    .get()
                    .ok_or_else(|| Failure::env("the view plan could not be kept"))?
            }
        };
        let d = PyDict::new(py);
        let regions = self.leased.shard_regions()?;
        if regions.len() != plan.shards.len() {
            return Err(Failure::env("the lease's shards are not the model's").into());
        }
        for (region, views) in regions.into_iter().zip(&plan.shards) {
            let len = u64::try_from(region.len)?;
            let memory = Bound::new(py, view::TensorMemory::new(region, "U8", &[len]))?;
            // One read-only uint8 array over the shard's memory, the base
            // of each of its views.
            let base = ndview::Base::over(memory)?;
            for v in views {
                let array = base.view(v.dtype.bind(py), &v.dims, v.offset)?;
                d.set_item(v.name.bind(py), array)?;
            }
        }
        Ok(d)
    }

    /// Whether the lease is still open.
    #[getter]
    fn open(&self) -> bool {
        self.leased.is_open()
    }

    /// The policy it was granted under.
    #[getter]
    fn policy(&self) -> &str {
        &self.policy
    }

    /// What was verified before it was granted: `{"leaves_checked",
    /// "bytes_checked", "seconds"}`.
    #[getter]
    fn verification<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        cost_dict(py, self.leased.cost())
    }

    /// Ends the lease now (idempotent).
    fn end(&self) {
        self.leased.end();
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> bool {
        self.leased.end();
        false
    }

    fn __repr__(&self) -> String {
        format!(
            "<vram_residency.Lease policy={} {}>",
            self.policy,
            if self.leased.is_open() {
                "open"
            } else {
                "ended"
            }
        )
    }
}

/// One tensor of a lease: `name`, `dtype` (the safetensors name: `F32`,
/// `F16`, `BF16`, ...; ggml's for GGUF: `Q8_0`, ...), `ggml_type`, `shape`,
/// `numpy()`, a zero-copy read-only NumPy view (the mock), and DLPack
/// (`torch.from_dlpack(t)`, `numpy.from_dlpack(t)`), zero-copy on the mock
/// and on CUDA.
#[pyclass(frozen, module = "vram_residency")]
struct Tensor {
    name: String,
    dtype: Dtype,
    shape: Vec<u64>,
    gguf: bool,
    handle: TensorHandle,
}

impl Tensor {
    fn ended(&self) -> PyErr {
        Failure::usage(format!(
            "tensor {}: its lease has ended; take a new lease",
            vram_validation::escape_for_log(&self.name, 128)
        ))
        .into()
    }

    /// The shape views show: the header's, but row-major (outermost
    /// dimension first) for a GGUF tensor, whose header lists ggml's
    /// dimensions innermost first.
    fn view_shape(&self) -> Vec<u64> {
        let mut shape = self.shape.clone();
        if self.gguf {
            shape.reverse();
        }
        shape
    }

    /// The open lease's region of this tensor, or `UsageError` once the
    /// lease has ended.
    fn open_region(&self) -> PyResult<worker::TensorRegion> {
        if !self.handle.is_open() {
            return Err(self.ended());
        }
        Ok(self.handle.region()?)
    }
}

#[pymethods]
impl Tensor {
    /// The tensor's name, as the file's header has it.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Its dtype: safetensors' name (`F32`, `F16`, `BF16`, `U8`, ...), or
    /// ggml's for a GGUF tensor (`F32`, `F16`, `Q8_0`, `Q4_K`, ...).
    #[getter]
    fn dtype(&self) -> &'static str {
        self.dtype.name()
    }

    /// For a tensor of a GGUF file, its ggml type (`Q8_0`, `Q4_K`, `F16`,
    /// ..., as ggml's `GGML_TYPE_*` names it): what the raw `uint8` bytes
    /// of a quantized view hold. `None` for a safetensors tensor.
    #[getter]
    fn ggml_type(&self) -> Option<&'static str> {
        self.gguf.then(|| self.dtype.name())
    }

    /// Its dimensions, as the file's header lists them (for GGUF, ggml's
    /// order: innermost first; views show them reversed, row-major).
    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.shape)
    }

    /// A read-only NumPy array over the sealed bytes themselves (no copy):
    /// `float32`, `float16`, `bfloat16` as `uint16`, 8-bit floats as `uint8`,
    /// sub-byte types and quantized GGUF blocks as raw `uint8` bytes. A GGUF
    /// tensor's dimensions are shown row-major (the header's reversed).
    /// Raises `UsageError` once the lease has ended, and on a CUDA device
    /// (GPU memory: use DLPack).
    ///
    /// The array keeps the shard's memory alive (its `base`), so it never
    /// reads freed memory. After the lease ends it still reads the shard's
    /// current bytes, which no lease vouches for any more: take a new lease
    /// (and new arrays) for each request.
    fn numpy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if !self.handle.is_open() {
            return Err(self.ended());
        }
        let region = self.handle.host_region()?;
        let memory = Py::new(
            py,
            view::TensorMemory::new(region, self.dtype.name(), &self.view_shape()),
        )?;
        py.import("numpy")?.call_method1("asarray", (memory,))
    }

    /// A DLPack capsule over the sealed bytes themselves (no copy), as the
    /// array API standard's `__dlpack__`: what `torch.from_dlpack(tensor)`,
    /// `numpy.from_dlpack(tensor)` and CuPy call. Host memory on the mock
    /// (`kDLCPU`), device memory on CUDA (`kDLCUDA`, the device's ordinal).
    ///
    /// - `max_version`: `(1, 0)` or later gives a `"dltensor_versioned"`
    ///   capsule flagged read-only; `None` (or a major version 0) a legacy
    ///   `"dltensor"` capsule, which cannot say read-only (NumPy still makes
    ///   every array it imports from one read-only; PyTorch's tensors are
    ///   writable either way: do not write them).
    /// - `copy=True` raises `BufferError`: a copy would leave the seal.
    /// - `dl_device` other than `__dlpack_device__()` raises `BufferError`.
    /// - `stream`: `None` on the CPU; on CUDA `None` or a stream number
    ///   other than 0. No synchronisation is needed: every sealed byte was
    ///   in device memory before the address was handed out (the buffer's
    ///   stream was synchronised) and nothing writes it afterwards.
    ///
    /// Dtypes: `F32`/`F16`/`F64` float, `BF16` bfloat16, integers signed or
    /// unsigned, `BOOL` bool, 8-bit floats `uint8`; quantized GGUF blocks
    /// and sub-byte types one `uint8` dimension over the raw bytes
    /// (`ggml_type` names the type). Strides in elements, row-major.
    ///
    /// Raises `UsageError` once the lease has ended. A view taken inside the
    /// lease keeps the shard's memory allocated (after the block and after
    /// `Model.release()` too) and reads its current bytes, which no lease
    /// vouches for once the lease has ended; the memory is freed when the
    /// last view (or unconsumed capsule) is gone.
    #[pyo3(signature = (*, stream = None, max_version = None, dl_device = None, copy = None))]
    fn __dlpack__<'py>(
        &self,
        py: Python<'py>,
        stream: Option<Bound<'py, PyAny>>,
        max_version: Option<(i64, i64)>,
        dl_device: Option<(i64, i64)>,
        copy: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (place, keep) = self.open_region()?.into_parts();
        let layout = dlpack::layout(&place, self.dtype, &self.view_shape())
            .map_err(|e| pyo3::exceptions::PyBufferError::new_err(e.0))?;
        dlpack::check_request(layout.device, stream.as_ref(), dl_device, copy)?;
        dlpack::capsule(py, layout, keep, Protocol::for_max_version(max_version))
    }

    /// `(device_type, device_id)` as DLPack numbers them: `(1, 0)` (kDLCPU)
    /// on the mock, `(2, ordinal)` (kDLCUDA) on a CUDA device. Raises
    /// `UsageError` once the lease has ended.
    fn __dlpack_device__(&self) -> PyResult<(i32, i32)> {
        let (place, _keep) = self.open_region()?.into_parts();
        let device =
            dlpack::dl_device(&place).map_err(|e| pyo3::exceptions::PyBufferError::new_err(e.0))?;
        Ok((device.device_type, device.device_id))
    }

    fn __repr__(&self) -> String {
        format!(
            "<vram_residency.Tensor {:?} {} {:?}>",
            vram_validation::escape_for_log(&self.name, 128),
            self.dtype.name(),
            self.shape
        )
    }
}

/// A running background scrubber (see `Manager.start_scrubber`).
#[pyclass(frozen, module = "vram_residency")]
struct Scrubber {
    inner: worker::Scrubber,
}

#[pymethods]
impl Scrubber {
    /// Progress: `{"sweeps", "leaves_checked", "seal_checks",
    /// "bytes_scrubbed", "failures", "last_sweep_unix_ms"}`.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        stats_dict(py, self.inner.stats())
    }

    /// Stops the scrubber, waits for its thread, returns the final stats.
    fn stop<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = py.detach(|| self.inner.stop());
        stats_dict(py, stats)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> bool {
        py.detach(|| self.inner.stop());
        false
    }
}

/// Verifies an audit log (and its rotated segments) with the key derived
/// from the worker secret (`secret_file`, else the systemd credential or
/// `$VRAM_SECRET_FILE`), as `vram audit verify` does. Returns `{"records",
/// "files", "head", "log_id"}` for an intact log; raises `IntegrityError`
/// with the first findings otherwise.
#[pyfunction]
#[pyo3(signature = (path, secret_file = None))]
fn audit_verify<'py>(
    py: Python<'py>,
    path: PathBuf,
    secret_file: Option<PathBuf>,
) -> PyResult<Bound<'py, PyDict>> {
    let verdict = py.detach(|| worker::audit_verify(&path, secret_file.as_deref()))?;
    let d = PyDict::new(py);
    d.set_item("records", verdict.records)?;
    d.set_item("files", verdict.files)?;
    d.set_item("head", verdict.head)?;
    d.set_item("log_id", verdict.log_id)?;
    Ok(d)
}

/// How many DLPack exports still hold a shard's memory: capsules not yet
/// deleted, and the arrays or tensors consumers made from them. A
/// diagnostic: it returns to where it was once every view is gone.
#[pyfunction]
fn _dlpack_exports_alive() -> usize {
    dlpack::live_exports()
}

/// The native module (`vram_residency._native`), re-exported by the package.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Manager>()?;
    m.add_class::<Model>()?;
    m.add_class::<Lease>()?;
    m.add_class::<Tensor>()?;
    m.add_class::<Scrubber>()?;
    m.add_function(wrap_pyfunction!(audit_verify, m)?)?;
    m.add_function(wrap_pyfunction!(_dlpack_exports_alive, m)?)?;
    m.add("TEST_HOOKS", cfg!(feature = "test-corruption"))?;
    errors::register(m)?;
    Ok(())
}
