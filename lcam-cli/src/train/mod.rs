//! `lcam train`: schedules, model specs, the backend-independent training loop, and the
//! backends (behind the `tch` feature for libtorch and the `burn` feature for Burn's flex).

pub mod args;
#[cfg(feature = "burn")]
pub mod burn_backend;
pub mod checkpoint;
pub mod malloc;
pub mod model;
pub mod run;
pub mod schedule;
#[cfg(feature = "tch")]
pub mod tch_backend;
pub mod wrn_fixture;

use anyhow::{Result, bail};

use args::TrainArgs;

/// Runs `lcam train`.
pub fn command(args: &TrainArgs) -> Result<()> {
    malloc::keep_freed_memory();
    #[allow(unused_mut)]
    let mut prepared = args::prepare(args)?;
    match args.backend {
        #[cfg(feature = "tch")]
        args::BackendKind::Tch => {
            let mut trainer = tch_backend::TchTrainer::new(&prepared.config, args.threads)?;
            prepared.config.parameters = trainer.param_count();
            prepared.config.backend_version = tch_backend::version();
            start(&prepared, args, &mut trainer)
        }
        #[cfg(feature = "burn")]
        args::BackendKind::Burn => {
            let mut trainer = burn_backend::BurnTrainer::new(&prepared.config, args.threads)?;
            prepared.config.parameters = trainer.param_count();
            prepared.config.backend_version = burn_backend::version();
            start(&prepared, args, &mut trainer)
        }
        #[allow(unreachable_patterns)]
        other => {
            drop(prepared);
            let name = format!("{other:?}").to_lowercase();
            bail!(
                "this `lcam` was built without the {name} backend: rebuild with `--features {name}` (cargo xtask does)"
            )
        }
    }
}

/// Checks the model's size against the spec and runs the loop.
#[cfg(any(feature = "tch", feature = "burn"))]
fn start(
    prepared: &args::Prepared,
    args: &TrainArgs,
    trainer: &mut dyn run::Trainer,
) -> Result<()> {
    let c = &prepared.config;
    let expected = c.model.param_count(c.dataset.classes());
    if c.parameters != expected {
        bail!(
            "internal: the {:?} model has {} parameters, the spec {expected}",
            c.backend,
            c.parameters
        );
    }
    eprintln!(
        "{} on {} ({} parameters), {} train / {} test images, {} on {}",
        c.model,
        c.dataset.dir_name(),
        c.parameters,
        prepared.train.len(),
        prepared.test.len(),
        format!("{:?}", c.backend).to_lowercase(),
        c.device
    );
    run::train(
        c,
        prepared.train.clone(),
        prepared.test.clone(),
        trainer,
        &args.out,
        args.resume,
        args.force,
    )?;
    Ok(())
}
