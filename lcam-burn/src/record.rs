//! Saving and loading an [`LcamOptimizer`]: momentum buffers, controller and configuration in
//! one burnpack record, validated against the module before anything is loaded.
//!
//! Layout (burnpack, Burn's record format): the internal `ModuleOptimizer`'s own record — one
//! tensor `"{param_id}.momentum"` per parameter that has a buffer, with its rank under the scalar
//! `"{param_id}.__rank"` and its module path under the metadata key `"{param_id}"` — plus the
//! metadata key `"lcam"`, a JSON object `{format, config, controller}` (floats written
//! shortest-round-trip, so the f64 running sum is restored exactly).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::ModuleOptimizer;
use burn::tensor::{Bytes, DType, Tensor};
use lcam_core::{ControllerState, Groups, LcamConfig, PhasedMomentum};
use serde::{Deserialize, Serialize};

use crate::error::{LcamBurnError, Result};
use crate::kernel::BUFFER_LEAF;
use crate::optimizer::LcamOptimizer;

/// The format tag stored in every LCAM record.
pub const RECORD_FORMAT: &str = "lcam-burn-record/1";

/// The metadata key holding the LCAM part of a record.
const LCAM_KEY: &str = "lcam";

/// The key `ModuleOptimizer` stores each parameter's rank under (`"{param_id}.__rank"`).
const RANK_LEAF: &str = "__rank";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LcamMeta {
    format: String,
    config: LcamConfig,
    controller: ControllerState,
    /// Parameter groups (absent for one group, as in every record written before groups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    groups: Option<RecordGroups>,
}

/// The groups of a record: the listed parameters' ids (lcam-core's parameter `i` is `ids[i]`)
/// and the resolved groups.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordGroups {
    ids: Vec<u64>,
    groups: Groups,
}

/// Float parameters of a module: id → (shape, dtype).
#[derive(Default)]
struct ParamShapes(HashMap<u64, (Vec<usize>, DType)>);

impl ModuleVisitor for ParamShapes {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        self.0
            .insert(param.id.val(), (value.dims().to_vec(), value.dtype()));
    }
}

fn read_err(path: Option<&Path>, message: impl ToString) -> LcamBurnError {
    LcamBurnError::RecordIo {
        action: "read",
        path: path.map(|p| p.display().to_string()),
        message: message.to_string(),
    }
}

fn write_err(path: Option<&Path>, message: impl ToString) -> LcamBurnError {
    LcamBurnError::RecordIo {
        action: "write",
        path: path.map(|p| p.display().to_string()),
        message: message.to_string(),
    }
}

fn mismatch(location: impl Into<String>, message: impl Into<String>) -> LcamBurnError {
    LcamBurnError::RecordMismatch {
        location: location.into(),
        message: message.into(),
    }
}

impl LcamOptimizer {
    /// The complete state as a burnpack record in memory (see the module docs for the layout).
    pub fn to_bytes(&self) -> Result<Bytes> {
        self.record_bytes(None)
    }

    fn record_bytes(&self, path: Option<&Path>) -> Result<Bytes> {
        let inner = self.inner().into_bytes().map_err(|e| write_err(path, e))?;
        let reader = burn_pack::Reader::from_bytes(inner).map_err(|e| write_err(path, e))?;
        let scalars = reader.scalars().clone();
        let metadata = reader.metadata().clone();
        let tensors = reader.into_tensors().map_err(|e| write_err(path, e))?;
        let meta = LcamMeta {
            format: RECORD_FORMAT.to_string(),
            config: *self.config(),
            controller: self.controller().state(),
            groups: self
                .group_parts()
                .map(|(ids, groups)| RecordGroups { ids, groups }),
        };
        let json = serde_json::to_string(&meta).map_err(|e| write_err(path, e))?;
        let mut writer = burn_pack::Writer::new(tensors).with_metadata(LCAM_KEY, &json);
        for (key, value) in &metadata {
            writer = writer.with_metadata(key, value);
        }
        for (key, value) in scalars {
            writer = writer.with_scalar(&key, value);
        }
        writer.into_bytes().map_err(|e| write_err(path, e))
    }

    /// Saves the complete state (buffers, controller, configuration) to `path` (written as given,
    /// no extension added). Loading it with [`LcamOptimizer::load`] and continuing is
    /// bit-identical to never stopping.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = self.record_bytes(Some(path))?;
        std::fs::write(path, &bytes[..]).map_err(|e| write_err(Some(path), e))
    }

    /// Restores an optimizer for `module` from a file written by [`LcamOptimizer::save`].
    ///
    /// Parameters are matched by [`burn::module::ParamId`], as for Burn's own optimizer
    /// records: pass the module saved alongside (its record keeps the ids). Every inconsistency
    /// — not a burnpack file, not an LCAM record, a buffer for a parameter the module lacks, a
    /// shape, rank or dtype that differs, an invalid configuration or controller state — is an
    /// error, and nothing is loaded.
    pub fn load<M: Module>(path: impl AsRef<Path>, module: &M) -> Result<Self> {
        let path = path.as_ref();
        let data = std::fs::read(path).map_err(|e| read_err(Some(path), e))?;
        Self::from_record(Bytes::from_bytes_vec(data), module, Some(path))
    }

    /// As [`LcamOptimizer::load`], from bytes produced by [`LcamOptimizer::to_bytes`].
    pub fn from_bytes<M: Module>(bytes: Bytes, module: &M) -> Result<Self> {
        Self::from_record(bytes, module, None)
    }

    fn from_record<M: Module>(bytes: Bytes, module: &M, path: Option<&Path>) -> Result<Self> {
        let reader = burn_pack::Reader::from_bytes(bytes.clone()).map_err(|e| read_err(path, e))?;
        let json = reader.metadata().get(LCAM_KEY).ok_or_else(|| {
            mismatch(
                "metadata.lcam",
                "missing: not an LCAM record (a plain Burn optimizer record?)",
            )
        })?;
        let meta: LcamMeta =
            serde_json::from_str(json).map_err(|e| mismatch("metadata.lcam", e.to_string()))?;
        if meta.format != RECORD_FORMAT {
            return Err(mismatch(
                "metadata.lcam.format",
                format!("`{}`, expected `{RECORD_FORMAT}`", meta.format),
            ));
        }
        let config = meta.config.validate()?;
        let controller = PhasedMomentum::from_state(&config, meta.controller)?;

        let mut params = ParamShapes::default();
        module.visit(&mut params);
        let ranks: BTreeMap<String, burn_pack::Scalar> = reader.scalars().clone();
        let tensors = reader.into_tensors().map_err(|e| read_err(path, e))?;
        let mut seen = BTreeMap::new();
        for (i, t) in tensors.iter().enumerate() {
            let loc = format!("tensors[{i}] (`{}`)", t.name);
            let id = t
                .param_id
                .ok_or_else(|| mismatch(&loc, "no parameter id"))?;
            if t.name != format!("{id}.{BUFFER_LEAF}") {
                return Err(mismatch(
                    &loc,
                    format!("unexpected name, expected `{id}.{BUFFER_LEAF}`"),
                ));
            }
            let (shape, dtype) = params.0.get(&id).ok_or_else(|| {
                mismatch(
                    &loc,
                    format!("parameter {id} is not in this module (a record of another model?)"),
                )
            })?;
            if t.shape.as_slice() != shape.as_slice() {
                return Err(mismatch(
                    &loc,
                    format!(
                        "shape {:?}, the parameter has {shape:?}",
                        t.shape.as_slice()
                    ),
                ));
            }
            if t.dtype != *dtype {
                return Err(mismatch(
                    &loc,
                    format!("dtype {:?}, the parameter has {dtype:?}", t.dtype),
                ));
            }
            let expected = shape.iter().product::<usize>() * dtype.size();
            if t.byte_len() != expected {
                return Err(mismatch(
                    &loc,
                    format!("{} bytes, expected {expected}", t.byte_len()),
                ));
            }
            seen.insert(id, shape.len());
        }
        for (key, value) in &ranks {
            let (id, leaf) = key
                .split_once('.')
                .ok_or_else(|| mismatch(format!("scalars.{key}"), "unexpected scalar"))?;
            let rank = seen.get(&id.parse::<u64>().unwrap_or(u64::MAX));
            match (leaf, rank) {
                (RANK_LEAF, Some(&rank)) if usize::try_from(*value).ok() == Some(rank) => {}
                (RANK_LEAF, Some(&rank)) => {
                    return Err(mismatch(
                        format!("scalars.{key}"),
                        format!("{value:?}, expected rank {rank}"),
                    ));
                }
                _ => {
                    return Err(mismatch(
                        format!("scalars.{key}"),
                        "unexpected scalar (no momentum buffer for this parameter)",
                    ));
                }
            }
        }
        if let Some(id) = seen
            .keys()
            .find(|id| !ranks.contains_key(&format!("{id}.{RANK_LEAF}")))
        {
            return Err(mismatch(format!("scalars.{id}.{RANK_LEAF}"), "missing"));
        }

        let mut optim = LcamOptimizer::assemble(config, controller);
        if let Some(g) = meta.groups {
            let ids = g.ids.into_iter().map(burn::module::ParamId::from).collect();
            optim
                .restore_groups(ids, g.groups)
                .map_err(|e| mismatch("metadata.lcam.groups", e.to_string()))?;
        }
        let inner: ModuleOptimizer = optim
            .fresh_inner()
            .from_bytes(bytes)
            .map_err(|e| read_err(path, e))?;
        optim.set_inner(inner);
        Ok(optim)
    }
}
