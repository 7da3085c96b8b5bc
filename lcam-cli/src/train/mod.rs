//! `lcam train`: schedules, model specs, the backend-independent training loop, and the
//! backends (behind the `tch` feature for libtorch).

pub mod model;
pub mod run;
pub mod schedule;
#[cfg(feature = "tch")]
pub mod tch_backend;

use anyhow::{Result, bail};

use run::{BackendKind, TrainArgs};

/// Runs `lcam train`.
pub fn command(args: &TrainArgs) -> Result<()> {
    let mut prepared = run::prepare(args)?;
    match args.backend {
        BackendKind::Tch => {
            #[cfg(feature = "tch")]
            {
                let mut trainer = tch_backend::TchTrainer::new(&prepared.config, args.threads)?;
                prepared.config.parameters = trainer.param_count();
                prepared.config.backend_version = tch_backend::version();
                let expected = prepared
                    .config
                    .model
                    .param_count(prepared.config.dataset.classes());
                if prepared.config.parameters != expected {
                    bail!(
                        "internal: tch model has {} parameters, spec says {expected}",
                        prepared.config.parameters
                    );
                }
                eprintln!(
                    "{} on {} ({} parameters), {} train / {} test images, tch on {}",
                    prepared.config.model,
                    args.dataset.dir_name(),
                    prepared.config.parameters,
                    prepared.train.len(),
                    prepared.test.len(),
                    args.device
                );
                run::train(
                    &prepared.config,
                    prepared.train,
                    prepared.test,
                    &mut trainer,
                    &args.out,
                    args.resume,
                    args.force,
                )?;
                Ok(())
            }
            #[cfg(not(feature = "tch"))]
            {
                let _ = &mut prepared;
                bail!(
                    "this `lcam` was built without the tch backend: rebuild with `--features tch` (cargo xtask does)"
                )
            }
        }
        BackendKind::Burn => {
            let _ = &mut prepared;
            bail!("the burn backend of `lcam train` is not built yet")
        }
    }
}
