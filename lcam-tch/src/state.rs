//! Save and load the whole optimizer state (`lcam-tch-state/2`) to one safetensors file.
//!
//! The file holds one tensor per momentum buffer, named `momentum_buffer.<parameter name>`
//! (raw bytes of the parameter's dtype: bit-exact), and a `u8` tensor `__lcam_state__` holding
//! the JSON metadata: format tag, configuration (with the current learning rate), controller
//! state, parameter groups (absent for one group), and per parameter its name, shape, dtype,
//! whether it has a buffer and the buffer's FNV-1a checksum. Any standard safetensors reader
//! can open it.
//!
//! `lcam-tch-state/1` files (the same, plus an `epoch_started` flag the optimizer no longer
//! keeps, and no groups) still load: the flag is ignored (lcam-core's start-epoch rule needs
//! none).

use std::path::{Path, PathBuf};

use lcam_core::{ControllerState, Driver, Groups, LcamConfig, LcamError, LcamState, TensorData};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::kernel::TchTensor;
use crate::optimizer::{Lcam, kind_name};

/// Format tag of the state files this version writes.
pub const STATE_FORMAT: &str = "lcam-tch-state/2";
/// Format tag of the previous version's state files, which still load.
pub const STATE_FORMAT_V1: &str = "lcam-tch-state/1";
const META: &str = "__lcam_state__";
const BUFFER_PREFIX: &str = "momentum_buffer.";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    format: String,
    config: LcamConfig,
    controller: ControllerState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    groups: Option<Groups>,
    params: Vec<ParamMeta>,
}

/// `lcam-tch-state/1`'s metadata.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetaV1 {
    format: String,
    config: LcamConfig,
    controller: ControllerState,
    #[allow(dead_code)]
    epoch_started: bool,
    params: Vec<ParamMeta>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParamMeta {
    name: String,
    shape: Vec<i64>,
    dtype: String,
    /// FNV-1a 64 of the buffer's bytes; `None` when the parameter has no buffer yet.
    buffer_checksum: Option<String>,
}

/// FNV-1a 64 of `bytes` as 16 hex digits.
fn fnv1a(bytes: &[u8]) -> String {
    use std::hash::Hasher as _;
    let mut h = fnv::FnvHasher::default();
    h.write(bytes);
    format!("{:016x}", h.finish())
}

/// The bytes of a CPU, contiguous tensor.
fn bytes_of(t: &Tensor) -> Result<Vec<u8>> {
    let numel = t.numel();
    let mut v = vec![0u8; numel * t.kind().elt_size_in_bytes()];
    t.f_copy_data_u8(&mut v, numel)?;
    Ok(v)
}

impl Lcam {
    /// Saves the whole state — configuration (with the current learning rate), controller,
    /// every momentum buffer, and the parameters' names, shapes and dtypes — to one file, so
    /// that [`Lcam::load`] and continuing is bit-identical to never stopping. libtorch's own
    /// SGD cannot save its state; this one can.
    ///
    /// The file is written next to `path` under a temporary name, synced, then renamed over
    /// `path`: a crash never leaves a half-written state file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        let mut params = Vec::with_capacity(self.slots.len());
        for s in &self.slots {
            let p = &s.param.0;
            let mut checksum = None;
            if let Some(b) = &s.buffer {
                let cpu = b.0.f_to_device(Device::Cpu)?.f_contiguous()?;
                checksum = Some(fnv1a(&bytes_of(&cpu)?));
                tensors.push((format!("{BUFFER_PREFIX}{}", s.name), cpu));
            }
            params.push(ParamMeta {
                name: s.name.clone(),
                shape: p.size(),
                dtype: kind_name(p.kind()),
                buffer_checksum: checksum,
            });
        }
        let groups = self.driver.groups();
        let meta = Meta {
            format: STATE_FORMAT.to_string(),
            config: *self.driver.config(),
            controller: self.driver.controller().state(),
            groups: (!groups.is_single()).then(|| groups.clone()),
            params,
        };
        let json = serde_json::to_vec(&meta).map_err(|e| Error::State {
            path: path.to_path_buf(),
            location: "metadata".into(),
            message: format!("cannot serialise: {e}"),
        })?;
        tensors.push((META.to_string(), Tensor::f_from_slice(&json)?));

        let io = |action: &'static str, source: std::io::Error| Error::Io {
            action,
            path: path.to_path_buf(),
            source,
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".lcam-state-")
            .suffix(".tmp")
            .tempfile_in(&dir)
            .map_err(|e| io("create a temporary file next to", e))?;
        Tensor::write_safetensors(&tensors, tmp.path())?;
        std::fs::File::open(tmp.path())
            .and_then(|f| f.sync_all())
            .map_err(|e| io("sync the temporary file for", e))?;
        tmp.persist(path).map_err(|e| io("write", e.error))?;
        Ok(())
    }

    /// Restores the state saved by [`Lcam::save`] into this optimizer, whose parameters must be
    /// those the state was saved from (same names, shapes and dtypes, in the same order).
    /// Buffers are placed on each parameter's device.
    ///
    /// Everything is validated before anything changes: a state from another model, a corrupt
    /// or truncated file returns [`Error::State`] naming the tensor (or part of the file) at
    /// fault, and the optimizer is left as it was.
    pub fn load(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bad = |location: &str, message: String| Error::State {
            path: path.to_path_buf(),
            location: location.to_string(),
            message,
        };
        std::fs::metadata(path).map_err(|source| Error::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        })?;
        let mut tensors = Tensor::read_safetensors(path)
            .map_err(|e| bad("file", format!("not a readable safetensors file: {e}")))?;

        let meta_at = tensors.iter().position(|(n, _)| n == META).ok_or_else(|| {
            bad(
                META,
                format!("missing: not an LCAM state file ({STATE_FORMAT})"),
            )
        })?;
        let (_, meta_t) = tensors.swap_remove(meta_at);
        if meta_t.kind() != Kind::Uint8 || meta_t.dim() != 1 {
            return Err(bad(
                META,
                format!(
                    "dtype {:?} shape {:?}, expected a 1-D Uint8 tensor",
                    meta_t.kind(),
                    meta_t.size()
                ),
            ));
        }
        let meta_bytes = bytes_of(&meta_t)?;
        let parse_err = |e: serde_json::Error| bad(META, format!("cannot parse the metadata: {e}"));
        let format = serde_json::from_slice::<serde_json::Value>(&meta_bytes)
            .map_err(parse_err)?
            .get("format")
            .and_then(|f| f.as_str().map(str::to_string));
        let meta: Meta = match format.as_deref() {
            Some(STATE_FORMAT_V1) => {
                let v1: MetaV1 = serde_json::from_slice(&meta_bytes).map_err(parse_err)?;
                Meta {
                    format: v1.format,
                    config: v1.config,
                    controller: v1.controller,
                    groups: None,
                    params: v1.params,
                }
            }
            Some(STATE_FORMAT) => serde_json::from_slice(&meta_bytes).map_err(parse_err)?,
            other => {
                return Err(bad(
                    "format",
                    format!(
                        "{}, expected `{STATE_FORMAT}` (or `{STATE_FORMAT_V1}`)",
                        other.map_or("missing".to_string(), |f| format!("`{f}`"))
                    ),
                ));
            }
        };
        let config = meta.config.validate().map_err(|e| match e {
            LcamError::InvalidConfig {
                field,
                value,
                expected,
            } => bad(&format!("config.{field}"), format!("{value}, {expected}")),
            other => Error::Core(other),
        })?;
        let driver = Driver::from_parts(config, meta.groups, self.slots.len(), meta.controller)
            .map_err(|e| match e {
                LcamError::InvalidState { location, message } => bad(&location, message),
                other => Error::Core(other),
            })?;

        if meta.params.len() != self.slots.len() {
            return Err(bad(
                "params",
                format!(
                    "{} parameter tensors ({}), this optimizer has {} ({})",
                    meta.params.len(),
                    summary(meta.params.iter().map(|p| p.name.as_str())),
                    self.slots.len(),
                    summary(self.names()),
                ),
            ));
        }
        let mut buffers: Vec<Option<TchTensor>> = Vec::with_capacity(self.slots.len());
        for (i, (m, s)) in meta.params.iter().zip(&self.slots).enumerate() {
            let p = &s.param.0;
            let loc = format!("params[{i}] ({})", m.name);
            if m.name != s.name {
                return Err(bad(
                    &loc,
                    format!(
                        "name `{}`, this optimizer's parameter {i} is `{}`",
                        m.name, s.name
                    ),
                ));
            }
            if m.shape != p.size() {
                return Err(bad(
                    &loc,
                    format!("shape {:?}, the parameter has {:?}", m.shape, p.size()),
                ));
            }
            if m.dtype != kind_name(p.kind()) {
                return Err(bad(
                    &loc,
                    format!("dtype {}, the parameter has {:?}", m.dtype, p.kind()),
                ));
            }
            let bname = format!("{BUFFER_PREFIX}{}", m.name);
            let found = tensors.iter().position(|(n, _)| *n == bname);
            let buffer = match (&m.buffer_checksum, found) {
                (None, None) => None,
                (None, Some(_)) => {
                    return Err(bad(
                        &bname,
                        "present, but the metadata says the parameter has no buffer".into(),
                    ));
                }
                (Some(_), None) => return Err(bad(&bname, "missing".into())),
                (Some(sum), Some(j)) => {
                    let (_, b) = tensors.swap_remove(j);
                    if b.size() != p.size() || b.kind() != p.kind() {
                        return Err(bad(
                            &bname,
                            format!(
                                "shape {:?} dtype {:?}, the parameter has {:?} {:?}",
                                b.size(),
                                b.kind(),
                                p.size(),
                                p.kind()
                            ),
                        ));
                    }
                    let got = fnv1a(&bytes_of(&b)?);
                    if got != *sum {
                        return Err(bad(
                            &bname,
                            format!("checksum {got}, the metadata says {sum}: corrupt data"),
                        ));
                    }
                    Some(TchTensor(b.f_to_device(p.device())?))
                }
            };
            buffers.push(buffer);
        }
        if let Some((name, _)) = tensors.first() {
            return Err(bad(
                name,
                "unexpected tensor (no parameter of this optimizer has that name)".into(),
            ));
        }

        self.driver = driver;
        for (s, b) in self.slots.iter_mut().zip(buffers) {
            s.buffer = b;
        }
        Ok(())
    }
}

fn summary<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    let shown: Vec<String> = names.iter().take(4).map(|n| format!("`{n}`")).collect();
    if names.len() > 4 {
        format!("{}, …", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// A tch dtype lcam-core can hold a state of (`f32`, `f64`).
pub trait CoreScalar: lcam_core::Scalar + tch::kind::Element + Default {}
impl CoreScalar for f32 {}
impl CoreScalar for f64 {}

impl crate::optimizer::Slot {
    /// The parameter's shape, if its dtype is `F` (else an error naming it).
    fn core_shape<F: CoreScalar>(&self) -> Result<Vec<usize>> {
        let p = &self.param.0;
        if p.kind() != F::KIND {
            return Err(Error::Tensor {
                tensor: self.name.clone(),
                message: format!("dtype {:?}, lcam-core state of {}", p.kind(), F::DTYPE),
            });
        }
        Ok(p.size().iter().map(|&d| d as usize).collect())
    }
}

impl Lcam {
    /// The whole state in lcam-core's format (`lcam-state/1`, [`LcamState`]), buffers copied to
    /// the host — what lcam-core's `Lcam` and lcam-cuda's `CudaLcam` load. Every parameter must
    /// have dtype `F` ([`Error::Tensor`] names the first that has not).
    pub fn core_state<F: CoreScalar>(&self) -> Result<LcamState<F>> {
        let mut buffers = Vec::with_capacity(self.slots.len());
        for s in &self.slots {
            let shape = s.core_shape::<F>()?;
            buffers.push(match &s.buffer {
                None => None,
                Some(b) => {
                    let cpu = b.0.f_to_device(Device::Cpu)?.f_contiguous()?;
                    let n = cpu.numel();
                    let mut data = vec![F::default(); n];
                    cpu.f_copy_data(&mut data, n)?;
                    Some(TensorData { shape, data })
                }
            });
        }
        Ok(LcamState {
            format: LcamState::<F>::FORMAT.to_string(),
            dtype: F::DTYPE.to_string(),
            config: *self.driver.config(),
            controller: self.driver.controller().state(),
            buffers,
            groups: (!self.driver.groups().is_single()).then(|| self.driver.groups().clone()),
        })
    }

    /// Restores a state in lcam-core's format into this optimizer (buffers placed on each
    /// parameter's device), validated exactly as lcam-core's `Lcam::from_state` validates it
    /// (format, dtype, configuration, controller, buffer count and shapes); on error nothing
    /// changed. Continuing is bit-identical to continuing the optimizer the state came from,
    /// where that one computes as this one does.
    pub fn load_core_state<F: CoreScalar>(&mut self, state: &LcamState<F>) -> Result<()> {
        let shapes = self
            .slots
            .iter()
            .map(|s| s.core_shape::<F>())
            .collect::<Result<Vec<_>>>()?;
        let core = lcam_core::Lcam::from_state_shapes(state, &shapes)?;
        let mut buffers = Vec::with_capacity(self.slots.len());
        for (s, b) in self.slots.iter().zip(core.buffers()) {
            buffers.push(match b {
                None => None,
                Some(a) => {
                    let flat: Vec<F> = a.iter().copied().collect();
                    let t = Tensor::f_from_slice(&flat)?
                        .f_view(s.param.0.size().as_slice())?
                        .f_to_device(s.param.0.device())?;
                    Some(TchTensor(t))
                }
            });
        }
        self.driver = Driver::from_parts(
            *core.config(),
            Some(core.groups().clone()),
            self.slots.len(),
            core.controller().state(),
        )?;
        for (s, b) in self.slots.iter_mut().zip(buffers) {
            s.buffer = b;
        }
        Ok(())
    }
}
