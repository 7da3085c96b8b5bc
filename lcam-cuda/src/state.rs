//! Saving and loading: lcam-core's [`LcamState`] (`lcam-state/1`) is the format, so a state
//! saved here loads into lcam-core's `Lcam` (and back), with the same validation.

use lcam_core::{Groups, Lcam, LcamConfig, LcamState, TensorData};

use crate::error::Result;
use crate::layout::{DeviceController, KernelScalar, check_group_count};

/// A state split into what the device holds.
pub(crate) struct Loaded<F> {
    pub config: LcamConfig,
    pub controller: DeviceController,
    /// The parameter groups (`None`: one group).
    pub groups: Option<Groups>,
    /// Per tensor: the buffer (row-major), `None` when the tensor has none yet.
    pub buffers: Vec<Option<Vec<F>>>,
}

/// Validates `state` for parameters of `shapes` exactly as `lcam_core::Lcam::from_state` does
/// (format, dtype, configuration, groups, controller, buffer count and shapes); more groups than
/// the kernels take is [`lcam_core::LcamError::InvalidGroup`].
pub(crate) fn load<F: KernelScalar>(
    state: &LcamState<F>,
    shapes: &[Vec<usize>],
) -> Result<Loaded<F>> {
    let core = Lcam::from_state_shapes(state, shapes)?;
    check_group_count(core.groups())?;
    let config = *core.config();
    Ok(Loaded {
        config,
        controller: DeviceController::new(&config, Some(core.controller().state()))?,
        groups: (!core.groups().is_single()).then(|| core.groups().clone()),
        buffers: core
            .buffers()
            .iter()
            .map(|b| b.as_ref().map(|a| a.iter().copied().collect()))
            .collect(),
    })
}

/// The state of an optimizer whose buffers (`None`: no buffer yet) were read back.
pub(crate) fn save<F: KernelScalar>(
    config: &LcamConfig,
    groups: &Groups,
    controller: &DeviceController,
    shapes: &[Vec<usize>],
    buffers: Vec<Option<Vec<F>>>,
) -> LcamState<F> {
    LcamState {
        format: LcamState::<F>::FORMAT.to_string(),
        dtype: F::DTYPE.to_string(),
        config: *config,
        controller: controller.state(),
        buffers: buffers
            .into_iter()
            .zip(shapes)
            .map(|(b, s)| {
                b.map(|data| TensorData {
                    shape: s.clone(),
                    data,
                })
            })
            .collect(),
        groups: (!groups.is_single()).then(|| groups.clone()),
    }
}
