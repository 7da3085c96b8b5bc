//! Reading the runs' `metrics.csv`, statistics over seeds, and `report.md`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use statrs::distribution::{ContinuousCDF, StudentsT};

use super::{Plan, ScheduleKind};

/// One row of an `lcam train` run's `metrics.csv` — the reading side of lcam-cli's
/// `EpochRow`. A copy on purpose: xtask cannot depend on lcam-cli, because with the workspace's
/// test features lcam-cli links libtorch and xtask's test binary has no rpath to it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EpochRow {
    /// 1-based epoch.
    pub epoch: u64,
    /// lr of the epoch's last step.
    pub lr: f64,
    /// The epoch's mean batch loss.
    pub train_loss: f64,
    /// Training accuracy (0–1).
    pub train_acc: f64,
    /// Mean test loss.
    pub test_loss: f64,
    /// Test accuracy (0–1).
    pub test_acc: f64,
    /// Share of steps decided Below.
    pub below_share: f64,
    /// Wall seconds of the epoch.
    pub seconds: f64,
    /// Training images per second.
    pub img_per_s: f64,
}

/// The epochs of one run.
pub type RunMetrics = Vec<EpochRow>;

/// Reads `<dir>/metrics.csv`.
pub fn load_metrics(dir: &Path) -> Result<RunMetrics> {
    let path = dir.join("metrics.csv");
    let mut r =
        csv::Reader::from_path(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let rows = r
        .deserialize()
        .collect::<Result<Vec<EpochRow>, _>>()
        .with_context(|| format!("{} is corrupt", path.display()))?;
    for (i, row) in rows.iter().enumerate() {
        if row.epoch != i as u64 + 1 {
            bail!(
                "{}: row {} has epoch {}, expected {}",
                path.display(),
                i + 1,
                row.epoch,
                i + 1
            );
        }
    }
    Ok(rows)
}

/// Every run of a configuration, seed by seed.
#[derive(Debug, Clone, Default)]
pub struct ConfigRuns {
    /// One entry per seed, in seed order.
    pub seeds: Vec<RunMetrics>,
}

/// The runs of a panel, configuration by configuration (the plan's order).
pub type PanelRuns = Vec<ConfigRuns>;

/// Loads every run of `plan`; all must be finished.
pub fn collect(plan: &Plan) -> Result<Vec<PanelRuns>> {
    let mut out: Vec<PanelRuns> = plan
        .panels
        .iter()
        .map(|p| vec![ConfigRuns::default(); p.configs.len()])
        .collect();
    let mut run_order: Vec<&super::RunSpec> = plan.runs.iter().collect();
    run_order.sort_by_key(|r| (r.panel, r.config, r.seed));
    for run in run_order {
        let rows = load_metrics(&run.dir).with_context(|| {
            format!(
                "run {} has no results yet: run `cargo xtask reproduce` without --report-only",
                run.dir.display()
            )
        })?;
        if rows.len() as u64 != plan.protocol.epochs {
            bail!(
                "run {} is unfinished ({} of {} epochs): rerun `cargo xtask reproduce` to resume it",
                run.dir.display(),
                rows.len(),
                plan.protocol.epochs
            );
        }
        out[run.panel][run.config].seeds.push(rows);
    }
    Ok(out)
}

/// Mean and 95 % confidence half-width (Student's t, n − 1 degrees of freedom).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Sample mean.
    pub mean: f64,
    /// Half-width of the 95 % confidence interval; `None` with a single sample.
    pub half_width: Option<f64>,
    /// Samples.
    pub n: usize,
}

impl Summary {
    /// Summarises `xs` (non-empty).
    pub fn of(xs: &[f64]) -> Summary {
        let n = xs.len();
        let mean = xs.iter().sum::<f64>() / n.max(1) as f64;
        let half_width = (n >= 2).then(|| {
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            let t = StudentsT::new(0.0, 1.0, (n - 1) as f64)
                .map(|d| d.inverse_cdf(0.975))
                .unwrap_or(f64::NAN);
            t * (var / n as f64).sqrt()
        });
        Summary {
            mean,
            half_width,
            n,
        }
    }

    /// `mean ± hw` with `digits` decimals (`mean` alone for one sample).
    pub fn show(&self, digits: usize) -> String {
        match self.half_width {
            Some(h) => format!("{:.digits$} ± {:.digits$}", self.mean, h),
            None => format!("{:.digits$}", self.mean),
        }
    }
}

/// Per-seed quantities of a configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigStats {
    /// Final test accuracy (%).
    pub final_acc: Summary,
    /// Best test accuracy over epochs (%).
    pub best_acc: Summary,
    /// Epoch of the best (1-based).
    pub best_epoch: Summary,
    /// Final train loss.
    pub final_loss: Summary,
    /// Per seed: the first epoch whose test accuracy reaches `target`, if any.
    pub reach: Vec<Option<u64>>,
    /// Share of Below steps in the last epoch.
    pub below_share: Summary,
}

/// Statistics of `runs`; `target` is the accuracy (%) whose first reaching epoch is counted.
pub fn config_stats(runs: &ConfigRuns, target: f64) -> ConfigStats {
    let acc = |r: &EpochRow| 100.0 * r.test_acc;
    let finals: Vec<f64> = runs
        .seeds
        .iter()
        .filter_map(|s| s.last())
        .map(acc)
        .collect();
    let bests: Vec<(f64, u64)> = runs
        .seeds
        .iter()
        .filter_map(|s| {
            s.iter()
                .map(|r| (acc(r), r.epoch))
                // The earliest epoch among equal bests.
                .reduce(|a, b| if b.0 > a.0 { b } else { a })
        })
        .collect();
    let reach = runs
        .seeds
        .iter()
        .map(|s| s.iter().find(|r| acc(r) >= target).map(|r| r.epoch))
        .collect();
    ConfigStats {
        final_acc: Summary::of(&finals),
        best_acc: Summary::of(&bests.iter().map(|b| b.0).collect::<Vec<_>>()),
        best_epoch: Summary::of(&bests.iter().map(|b| b.1 as f64).collect::<Vec<_>>()),
        final_loss: Summary::of(
            &runs
                .seeds
                .iter()
                .filter_map(|s| s.last())
                .map(|r| r.train_loss)
                .collect::<Vec<_>>(),
        ),
        reach,
        below_share: Summary::of(
            &runs
                .seeds
                .iter()
                .filter_map(|s| s.last())
                .map(|r| 100.0 * r.below_share)
                .collect::<Vec<_>>(),
        ),
    }
}

/// `mean epoch (k/n seeds)` of the seeds that reached the target.
fn show_reach(reach: &[Option<u64>]) -> String {
    let hit: Vec<f64> = reach.iter().flatten().map(|&e| e as f64).collect();
    if hit.is_empty() {
        return format!("not reached (0/{})", reach.len());
    }
    format!(
        "{} ({}/{})",
        Summary::of(&hit).show(1),
        hit.len(),
        reach.len()
    )
}

/// The whole `report.md`.
pub fn markdown(plan: &Plan, results: &[PanelRuns]) -> String {
    let p = &plan.protocol;
    let mut s = String::new();
    let _ = writeln!(s, "# LCAM reproduction — preset `{}`\n", p.preset);
    let _ = writeln!(
        s,
        "Produced by `cargo xtask reproduce --preset {} --seeds {} --backend {} --device {}` \
         (lcam {}). Every number is over {} seed(s); `a ± b` is the mean and the half-width of \
         its 95 % confidence interval (Student's t, n − 1 degrees of freedom). Seeds are paired: \
         seed k gives every configuration the same initial weights and batch order.\n",
        p.preset,
        plan.seeds,
        plan.backend,
        plan.device,
        env!("CARGO_PKG_VERSION"),
        plan.seeds
    );
    let _ = writeln!(s, "## Protocol\n");
    let _ = writeln!(s, "| item | value |\n|---|---|");
    let _ = writeln!(s, "| model | {} |", p.model);
    let _ = writeln!(
        s,
        "| data | first {} training / {} test images of each dataset |",
        p.train_images, p.test_images
    );
    let _ = writeln!(
        s,
        "| batches | {} ({} steps per epoch) |",
        p.batch_size,
        p.steps_per_epoch()
    );
    let _ = writeln!(
        s,
        "| optimizer | lr {}, weight decay {}, dampening 0, no Nesterov |",
        p.lr, p.weight_decay
    );
    let _ = writeln!(s, "| epochs | {} |", p.epochs);
    let _ = writeln!(s, "| step schedule (Figs 3, 4) | `{}` |", p.step_schedule());
    let _ = writeln!(
        s,
        "| exponential schedule (Fig 5) | `{}` |",
        p.exp_schedule()
    );
    let _ = writeln!(
        s,
        "| augmentation, normalisation | crop 32 from zero-padded 40, flip p = 0.5; ImageNet mean/std (SPEC §3) |\n"
    );
    if p.preset != super::Preset::Paper {
        let _ = writeln!(
            s,
            "This preset scales the paper's protocol (WRN-28-10, 50,000 images, 150 epochs) down: \
             the schedule milestones sit at the same fractions of the run (31/150, 61/150, 91/150) \
             and the exponential decay reaches the same total factor \
             (0.99985^(391·119) ≈ 9.3e-4). Absolute accuracies are therefore far below the \
             paper's; the comparison between configurations is what the preset checks.\n"
        );
    }
    let mut seconds = 0.0;
    let mut drawn = vec![];
    for (panel, runs) in plan.panels.iter().zip(results) {
        let _ = writeln!(s, "## Figure {} — {}\n", panel.figure, panel.title());
        if !drawn.contains(&panel.figure) {
            drawn.push(panel.figure);
            let _ = writeln!(
                s,
                "![Figure {}: test error and train loss per epoch](fig{}.png)\n",
                panel.figure, panel.figure
            );
        }
        let baseline = runs
            .first()
            .map(|b| config_stats(b, f64::INFINITY).final_acc.mean)
            .unwrap_or(f64::NAN);
        let _ = writeln!(
            s,
            "| configuration | final test acc (%) | best test acc (%) | epoch of best | epochs to reach {:.2} % | final train loss | below-mean steps, last epoch (%) |",
            baseline
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|");
        for (c, r) in panel.configs.iter().zip(runs) {
            let st = config_stats(r, baseline);
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} |",
                c.label(),
                st.final_acc.show(2),
                st.best_acc.show(2),
                st.best_epoch.show(1),
                show_reach(&st.reach),
                st.final_loss.show(4),
                st.below_share.show(1)
            );
            seconds += r.seeds.iter().flatten().map(|e| e.seconds).sum::<f64>();
        }
        let sched = match panel.schedule {
            ScheduleKind::Step => p.step_schedule(),
            ScheduleKind::Exp => p.exp_schedule(),
        };
        let _ = writeln!(
            s,
            "\n{:.2} % is the fixed-0.9 baseline's mean final accuracy; \"epochs to reach\" is the \
             first epoch at or above it (mean over the seeds that reach it, and how many do). \
             Schedule `{sched}`.\n",
            baseline
        );
    }
    let _ = writeln!(
        s,
        "## Reading it\n\n\
         - *Final* accuracy is the honest number. *Best* picks the epoch on the test set, as the \
         paper did (one of the ICLR reviewers' objections); it is shown for comparison only.\n\
         - The paper's claim (SPEC §4): LCAM reaches the accuracy of classic SGD in nearly half \
         the epochs; compare the \"epochs to reach\" column with the run length.\n\
         - Reported in the paper and literature (WRN-28-10): LCAM peak 80.78 % on CIFAR-100 \
         around epoch 120; classic SGD 96.00 % / 80.75 % (CIFAR-10 / CIFAR-100, 200 epochs).\n\n\
         Training time of all runs: {:.1} min.",
        seconds / 60.0
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(accs: &[f64]) -> RunMetrics {
        accs.iter()
            .enumerate()
            .map(|(i, &a)| EpochRow {
                epoch: i as u64 + 1,
                lr: 0.1,
                train_loss: 1.0 / (i + 1) as f64,
                train_acc: a,
                test_loss: 1.0,
                test_acc: a,
                below_share: 0.5,
                seconds: 1.0,
                img_per_s: 100.0,
            })
            .collect()
    }

    #[test]
    fn confidence_interval_uses_students_t() {
        let s = Summary::of(&[1.0, 2.0, 3.0]);
        assert_eq!(s.mean, 2.0);
        // t(0.975, 2) = 4.302653, s = 1, n = 3.
        let hw = s.half_width.expect("n = 3");
        assert!((hw - 4.302_652_7 / 3f64.sqrt()).abs() < 1e-6, "{hw}");
        assert_eq!(s.show(2), "2.00 ± 2.48");
        let one = Summary::of(&[5.0]);
        assert_eq!((one.half_width, one.show(1)), (None, "5.0".to_string()));
    }

    #[test]
    fn best_final_and_reach() {
        let runs = ConfigRuns {
            seeds: vec![run(&[0.1, 0.5, 0.4]), run(&[0.2, 0.3, 0.6])],
        };
        let st = config_stats(&runs, 45.0);
        assert!((st.final_acc.mean - 50.0).abs() < 1e-9);
        assert!((st.best_acc.mean - 55.0).abs() < 1e-9);
        assert_eq!(st.best_epoch.mean, 2.5);
        assert_eq!(st.reach, vec![Some(2), Some(3)]);
        assert_eq!(show_reach(&st.reach).split(' ').next(), Some("2.5"));
        assert_eq!(show_reach(&[None, None]), "not reached (0/2)");
        // Ties: the earliest epoch is the best.
        let tie = config_stats(
            &ConfigRuns {
                seeds: vec![run(&[0.5, 0.5])],
            },
            0.0,
        );
        assert_eq!(tie.best_epoch.mean, 1.0);
    }

    #[test]
    fn metrics_csv_round_trip_and_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("metrics.csv"),
            "epoch,lr,train_loss,train_acc,test_loss,test_acc,below_share,seconds,img_per_s\n\
             1,0.1,2.0,0.2,1.9,0.25,0.5,3.0,100.0\n2,0.02,1.5,0.4,1.4,0.45,0.4,3.0,100.0\n",
        )
        .expect("write");
        let rows = load_metrics(dir.path()).expect("rows");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].test_acc, 0.45);
        std::fs::write(
            dir.path().join("metrics.csv"),
            "epoch,lr,train_loss,train_acc,test_loss,test_acc,below_share,seconds,img_per_s\n\
             2,0.1,2.0,0.2,1.9,0.25,0.5,3.0,100.0\n",
        )
        .expect("write");
        let e = format!("{:#}", load_metrics(dir.path()).expect_err("gap"));
        assert!(e.contains("row 1 has epoch 2, expected 1"), "{e}");
        std::fs::write(dir.path().join("metrics.csv"), "epoch,lr\nx,1\n").expect("write");
        let e = format!("{:#}", load_metrics(dir.path()).expect_err("corrupt"));
        assert!(e.contains("metrics.csv is corrupt"), "{e}");
    }
}
