//! What the host and the kernels share: the `#[repr(C)]` mirrors of `LcamTensor` and
//! `LcamController` (kernels/lcam.cu), the launch shape, the pointer table and the checks made
//! before any launch. Used by both the GPU path and the host emulation.

use lcam_core::{
    ControllerState, Driver, EpochStats, Groups, LcamConfig, LcamError, ParamGroup, Phase,
    PhasedMomentum,
};
use serde::{Deserialize, Serialize};

use crate::error::{LcamCudaError, Result};

/// One entry of the multi-tensor table (`LcamTensor` in kernels/lcam.cu).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TensorEntry {
    /// Address of the parameter (`T*`).
    pub param: u64,
    /// Address of the gradient (`const T*`).
    pub grad: u64,
    /// Address of the momentum buffer (`T*`).
    pub buf: u64,
    /// Elements.
    pub len: u64,
    /// Chunks owned by all earlier entries.
    pub first_chunk: u64,
    /// Index of the tensor (its `has_buf` flag).
    pub slot: u64,
    /// Index of the tensor's parameter group in [`GroupScalars`].
    pub group: u64,
}

/// The most parameter groups a lcam-cuda optimizer may have (`LCAM_MAX_GROUPS` in
/// kernels/lcam.cu): their scalars travel by value in the step launch, so a learning-rate
/// change costs no transfer and no synchronisation.
pub const MAX_GROUPS: usize = 8;

/// Each parameter group's step parameters (`LcamGroups` in kernels/lcam.cu), an argument of
/// the step launch: group `g`'s learning rate, weight decay, `1 − dampening` (computed in f64
/// and rounded by the kernel, as lcam-core's `1.0 - h.dampening`) and Nesterov switch.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupScalars {
    /// Learning rates.
    pub lr: [f64; MAX_GROUPS],
    /// Weight decays.
    pub weight_decay: [f64; MAX_GROUPS],
    /// `1 − dampening`.
    pub one_minus_dampening: [f64; MAX_GROUPS],
    /// Nesterov switches (0 or 1).
    pub nesterov: [i32; MAX_GROUPS],
}

impl GroupScalars {
    /// The scalars of `groups` (lcam-core's resolved groups, `default` included); more than
    /// [`MAX_GROUPS`] is [`LcamError::InvalidGroup`] naming the first group over the limit.
    pub fn of(groups: &Groups) -> Result<Self> {
        check_group_count(groups)?;
        let mut s = Self {
            lr: [0.0; MAX_GROUPS],
            weight_decay: [0.0; MAX_GROUPS],
            one_minus_dampening: [1.0; MAX_GROUPS],
            nesterov: [0; MAX_GROUPS],
        };
        for (g, o) in groups.options().iter().enumerate() {
            s.lr[g] = o.lr;
            s.weight_decay[g] = o.weight_decay;
            s.one_minus_dampening[g] = 1.0 - o.dampening;
            s.nesterov[g] = i32::from(o.nesterov);
        }
        Ok(s)
    }
}

/// `driver` with `groups` over `n_params` parameters ([`Driver::regroup`]: before the first
/// step only; `started` when buffers exist), within [`MAX_GROUPS`]; `driver` is left as it was.
pub(crate) fn regrouped(
    driver: &Driver,
    n_params: usize,
    groups: &[ParamGroup],
    started: bool,
) -> Result<Driver> {
    let mut d = driver.clone();
    d.regroup(n_params, groups, started)?;
    check_group_count(d.groups())?;
    Ok(d)
}

/// [`LcamError::InvalidGroup`] when `groups` has more than [`MAX_GROUPS`] groups.
pub(crate) fn check_group_count(groups: &Groups) -> Result<()> {
    if groups.len() > MAX_GROUPS {
        return Err(LcamError::InvalidGroup {
            group: groups.names()[MAX_GROUPS].clone(),
            message: format!(
                "lcam-cuda takes at most {MAX_GROUPS} parameter groups (the `default` group of \
                 unlisted parameters included); this optimizer has {}",
                groups.len()
            ),
        }
        .into());
    }
    Ok(())
}

/// The device-resident controller (`LcamController` in kernels/lcam.cu): SPEC §2's state
/// (`sum`, `count`, `phase`, momentum in force) plus diagnostics.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DeviceController {
    /// `S_k`.
    pub sum: f64,
    /// Momentum in force for the next step.
    pub momentum: f64,
    /// `μ_below`.
    pub momentum_below: f64,
    /// `μ_above`.
    pub momentum_above: f64,
    /// Momentum used by the last applied step.
    pub used_momentum: f64,
    /// 0-based epoch.
    pub epoch: u64,
    /// `k`, losses observed in this epoch.
    pub count: u64,
    /// Steps of this epoch decided below.
    pub steps_below: u64,
    /// -1 before any loss, 0 below, 1 above.
    pub phase: i64,
    /// Non-finite losses rejected (their steps skipped).
    pub rejected: u64,
    /// Steps applied in total.
    pub steps: u64,
}

// SAFETY: plain old data with the C layout of the kernels' structs; all-zero bits are valid.
#[allow(unsafe_code)]
unsafe impl cudarc::driver::DeviceRepr for TensorEntry {}
#[allow(unsafe_code)]
unsafe impl cudarc::driver::ValidAsZeroBits for TensorEntry {}
#[allow(unsafe_code)]
unsafe impl cudarc::driver::DeviceRepr for GroupScalars {}
#[allow(unsafe_code)]
unsafe impl cudarc::driver::DeviceRepr for DeviceController {}
#[allow(unsafe_code)]
unsafe impl cudarc::driver::ValidAsZeroBits for DeviceController {}

impl DeviceController {
    /// The controller of a fresh optimizer, or one continuing from `state`, as lcam-core's
    /// [`PhasedMomentum::from_state`] would (same validation).
    pub fn new(config: &LcamConfig, state: Option<ControllerState>) -> Result<Self> {
        let core = match state {
            Some(s) => PhasedMomentum::from_state(config, s)?,
            None => PhasedMomentum::new(config),
        };
        let s = core.state();
        Ok(Self {
            sum: s.sum,
            momentum: core.momentum(),
            momentum_below: config.momentum_below,
            momentum_above: config.momentum_above,
            used_momentum: f64::NAN,
            epoch: s.epoch,
            count: s.count,
            steps_below: s.steps_below,
            phase: match s.phase {
                None => -1,
                Some(Phase::Below) => 0,
                Some(Phase::Above) => 1,
            },
            rejected: 0,
            steps: 0,
        })
    }

    /// The last decision.
    pub fn phase(&self) -> Option<Phase> {
        match self.phase {
            0 => Some(Phase::Below),
            1 => Some(Phase::Above),
            _ => None,
        }
    }

    /// As lcam-core's [`ControllerState`].
    pub fn state(&self) -> ControllerState {
        ControllerState {
            epoch: self.epoch,
            count: self.count,
            sum: self.sum,
            steps_below: self.steps_below,
            phase: self.phase(),
        }
    }

    /// Diagnostics as a plain value.
    pub fn diagnostics(&self) -> Diagnostics {
        Diagnostics {
            momentum: self.momentum,
            last_momentum: (self.steps > 0).then_some(self.used_momentum),
            phase: self.phase(),
            epoch: EpochStats {
                epoch: self.epoch,
                steps: self.count,
                steps_below: self.steps_below,
                mean_loss: if self.count == 0 {
                    f64::NAN
                } else {
                    self.sum / self.count as f64
                },
            },
            steps: self.steps,
            rejected_losses: self.rejected,
        }
    }
}

/// The controller's state read back from the device (one synchronisation, on request only).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Diagnostics {
    /// The momentum in force for the next step.
    pub momentum: f64,
    /// The momentum the last applied step used (`None` before the first).
    pub last_momentum: Option<f64>,
    /// The last phase decision (`None` before any loss).
    pub phase: Option<Phase>,
    /// The current epoch's statistics, as lcam-core reports them.
    pub epoch: EpochStats,
    /// Steps applied since this optimizer was built or loaded.
    pub steps: u64,
    /// Non-finite losses rejected on the device (each skipped its step entirely, as
    /// lcam-core's `Lcam::step` returns an error and changes nothing).
    pub rejected_losses: u64,
}

/// Grid, block and chunk sizes of the multi-tensor step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchShape {
    /// Threads per block.
    pub block: u32,
    /// The most blocks per launch (blocks stride over the chunks).
    pub max_blocks: u32,
    /// Elements per chunk (one block processes one chunk at a time).
    pub chunk: u64,
}

impl Default for LaunchShape {
    /// 256 threads, up to 1024 blocks, chunks of 65536 elements (as PyTorch's multi-tensor
    /// apply).
    fn default() -> Self {
        Self {
            block: 256,
            max_blocks: 1024,
            chunk: 65536,
        }
    }
}

impl LaunchShape {
    pub(crate) fn check(self) -> Result<Self> {
        if self.block == 0 || self.block > 1024 || self.max_blocks == 0 || self.chunk == 0 {
            return Err(LcamCudaError::Core(lcam_core::LcamError::InvalidConfig {
                field: "launch",
                value: format!("{self:?}"),
                expected: "1 <= block <= 1024, max_blocks >= 1, chunk >= 1",
            }));
        }
        Ok(self)
    }

    /// The grid size for `total_chunks` chunks.
    pub(crate) fn grid(self, total_chunks: u64) -> u32 {
        u32::try_from(total_chunks.min(u64::from(self.max_blocks))).unwrap_or(self.max_blocks)
    }
}

/// The element types the step kernel exists for: `f32`, `f64`.
pub trait KernelScalar:
    lcam_core::Scalar + cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits + Default
{
    /// The `extern "C"` name of the step kernel.
    const STEP_KERNEL: &'static str;
}

impl KernelScalar for f32 {
    const STEP_KERNEL: &'static str = "lcam_step_f32";
}

impl KernelScalar for f64 {
    const STEP_KERNEL: &'static str = "lcam_step_f64";
}

/// The types a batch loss may have in device memory: `f32`, `f64` (widened to f64 on the
/// device, as lcam-core takes the loss as `f64`).
pub trait LossScalar: cudarc::driver::DeviceRepr + Copy {
    /// 1 for `f64`, 0 for `f32` (the kernels' `loss_is_f64`).
    const IS_F64: i32;
}

impl LossScalar for f32 {
    const IS_F64: i32 = 0;
}

impl LossScalar for f64 {
    const IS_F64: i32 = 1;
}

/// The tensors of one step as addresses: `(param, grad, buf)` per tensor, `grad == None` for a
/// tensor without a gradient this step.
pub(crate) struct StepPointers {
    pub param: Vec<u64>,
    pub grad: Vec<Option<u64>>,
    pub buf: Vec<u64>,
}

/// Checks the pointers (no null among the used ones) and builds the table of the tensors that
/// have a gradient, with the chunk prefix sums; returns `(table, total_chunks)`.
pub(crate) fn build_table(
    lens: &[usize],
    group_of: &[usize],
    ptrs: &StepPointers,
    chunk: u64,
) -> Result<(Vec<TensorEntry>, u64)> {
    if ptrs.param.len() != lens.len() {
        return Err(LcamCudaError::CountMismatch {
            what: "parameters",
            got: ptrs.param.len(),
            expected: lens.len(),
        });
    }
    if ptrs.grad.len() != lens.len() {
        return Err(LcamCudaError::CountMismatch {
            what: "gradients",
            got: ptrs.grad.len(),
            expected: lens.len(),
        });
    }
    let mut table = Vec::with_capacity(lens.len());
    let mut chunks = 0u64;
    for (i, &len) in lens.iter().enumerate() {
        let Some(grad) = ptrs.grad[i] else { continue };
        let null = |what| LcamCudaError::NullPointer { tensor: i, what };
        let len = len as u64;
        // An empty tensor is never dereferenced: its pointers may be anything.
        if len > 0 {
            if ptrs.param[i] == 0 {
                return Err(null("parameter"));
            }
            if grad == 0 {
                return Err(null("gradient"));
            }
            if ptrs.buf[i] == 0 {
                return Err(null("momentum buffer"));
            }
        }
        table.push(TensorEntry {
            param: ptrs.param[i],
            grad,
            buf: ptrs.buf[i],
            len,
            first_chunk: chunks,
            slot: i as u64,
            group: group_of.get(i).copied().unwrap_or(0) as u64,
        });
        chunks += len.div_ceil(chunk);
    }
    Ok((table, chunks))
}

/// `got` elements where `expected` are needed, for tensor `tensor`'s `what`.
pub(crate) fn check_len(
    tensor: usize,
    what: &'static str,
    got: usize,
    expected: usize,
) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(LcamCudaError::LengthMismatch {
            tensor,
            what,
            got,
            expected,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ptrs(grad: Vec<Option<u64>>) -> StepPointers {
        let n = grad.len();
        StepPointers {
            param: (0..n as u64).map(|i| 0x1000 + i).collect(),
            grad,
            buf: (0..n as u64).map(|i| 0x2000 + i).collect(),
        }
    }

    #[test]
    fn the_table_lists_tensors_with_a_gradient_and_their_first_chunks() {
        let lens = [10, 0, 7, 3, 21];
        let (table, total) = build_table(
            &lens,
            &[0, 0, 1, 1, 0],
            &ptrs(vec![Some(1), Some(2), None, Some(4), Some(5)]),
            7,
        )
        .expect("table");
        let rows: Vec<(u64, u64, u64)> = table
            .iter()
            .map(|e| (e.slot, e.len, e.first_chunk))
            .collect();
        // 10 → 2 chunks, 0 → none, (7 skipped), 3 → 1, 21 → 3.
        assert_eq!(rows, vec![(0, 10, 0), (1, 0, 2), (3, 3, 2), (4, 21, 3)]);
        assert_eq!(total, 6);
        assert_eq!(table[2].grad, 4);
        assert_eq!(table[2].buf, 0x2003);
        assert_eq!(
            table.iter().map(|e| e.group).collect::<Vec<_>>(),
            [0, 0, 1, 0]
        );
    }

    #[test]
    fn null_pointers_and_counts_are_refused() {
        let lens = [4, 0];
        let mut p = ptrs(vec![Some(0), Some(0)]);
        let e = build_table(&lens, &[0, 0], &p, 8).expect_err("null gradient");
        assert!(matches!(
            e,
            LcamCudaError::NullPointer {
                tensor: 0,
                what: "gradient"
            }
        ));
        p.grad[0] = Some(9);
        p.param[0] = 0;
        let e = build_table(&lens, &[0, 0], &p, 8).expect_err("null parameter");
        assert!(matches!(
            e,
            LcamCudaError::NullPointer {
                tensor: 0,
                what: "parameter"
            }
        ));
        p.param[0] = 1;
        // An empty tensor's pointers are never dereferenced.
        assert!(build_table(&lens, &[0, 0], &p, 8).is_ok());
        let e = build_table(&[4], &[0], &p, 8).expect_err("count");
        assert!(matches!(
            e,
            LcamCudaError::CountMismatch {
                what: "parameters",
                got: 2,
                expected: 1
            }
        ));
    }

    #[test]
    fn the_controller_round_trips_through_lcam_core_state() {
        let config = LcamConfig::cifar100();
        let state = ControllerState {
            epoch: 3,
            count: 5,
            sum: 7.25,
            steps_below: 2,
            phase: Some(Phase::Below),
        };
        let c = DeviceController::new(&config, Some(state)).expect("valid");
        assert_eq!(c.state(), state);
        assert_eq!(c.momentum, 0.93);
        assert_eq!(
            DeviceController::new(&config, None)
                .expect("fresh")
                .momentum,
            0.9
        );
        let bad = ControllerState {
            steps_below: 9,
            ..state
        };
        assert!(DeviceController::new(&config, Some(bad)).is_err());
    }
}
