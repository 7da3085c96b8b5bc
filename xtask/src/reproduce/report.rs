//! Reading the runs' `metrics.csv`, statistics over seeds, and `report.md`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::{Value, json};
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
    /// One entry per complete seed, in seed order.
    pub seeds: Vec<RunMetrics>,
    /// The seed of each entry of `seeds` (empty: 1, 2, … in order).
    pub seed_ids: Vec<u32>,
}

impl ConfigRuns {
    /// The seed of entry `i`.
    pub fn seed_of(&self, i: usize) -> u32 {
        self.seed_ids.get(i).copied().unwrap_or(i as u32 + 1)
    }
}

/// The runs of a panel, configuration by configuration (the plan's order).
pub type PanelRuns = Vec<ConfigRuns>;

/// The runs of a plan as found on disk.
#[derive(Debug, Clone, Default)]
pub struct Collected {
    /// Per panel, per configuration: the complete runs, in seed order.
    pub runs: Vec<PanelRuns>,
    /// The runs that are missing or unfinished, each named with its directory and why.
    pub missing: Vec<String>,
}

/// The fields of `config.json` a run of the plan must have, as `(json pointer, value)`.
pub(crate) fn expected_config(
    plan: &Plan,
    panel: usize,
    config: usize,
    seed: u32,
) -> Vec<(String, Value)> {
    let c = &plan.panels[panel].configs[config];
    let p = plan.protocol_of(c);
    let (depth, widen) = p
        .model
        .strip_prefix("wrn-")
        .and_then(|r| r.split_once('-'))
        .and_then(|(d, k)| Some((d.parse::<u64>().ok()?, k.parse::<u64>().ok()?)))
        .unwrap_or((0, 0));
    let mut v = vec![
        ("/dataset".to_string(), json!(plan.panels[panel].dataset)),
        ("/model/depth".into(), json!(depth)),
        ("/model/widen".into(), json!(widen)),
        ("/epochs".into(), json!(p.epochs)),
        ("/batch_size".into(), json!(p.batch_size)),
        ("/train_images".into(), json!(p.train_images)),
        ("/test_images".into(), json!(p.test_images)),
        ("/seed".into(), json!(seed)),
        ("/lcam/lr".into(), json!(p.lr)),
        ("/lcam/weight_decay".into(), json!(p.weight_decay)),
        ("/lcam/momentum_below".into(), json!(c.below)),
        ("/lcam/momentum_above".into(), json!(c.above)),
    ];
    let sched = plan.schedule(panel, config);
    if let Some(rest) = sched.strip_prefix("step:") {
        if let Some((f, after)) = rest.split_once('@') {
            v.push(("/schedule/kind".into(), json!("step")));
            v.push((
                "/schedule/factor".into(),
                json!(f.parse::<f64>().unwrap_or(f64::NAN)),
            ));
            let after: Vec<u64> = after.split(',').filter_map(|a| a.parse().ok()).collect();
            v.push(("/schedule/after".into(), json!(after)));
        }
    } else if let Some(rest) = sched.strip_prefix("exp:") {
        if let Some((g, from)) = rest.split_once('@') {
            v.push(("/schedule/kind".into(), json!("exp")));
            v.push((
                "/schedule/gamma".into(),
                json!(g.parse::<f64>().unwrap_or(f64::NAN)),
            ));
            v.push((
                "/schedule/from".into(),
                json!(from.parse::<u64>().unwrap_or(0)),
            ));
        }
    } else {
        v.push(("/schedule/kind".into(), json!(sched)));
    }
    v
}

/// Checks `<dir>/config.json` against the plan: the first field that differs, if any.
fn config_mismatch(dir: &Path, expected: &[(String, Value)]) -> Result<Option<String>> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let got: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    for (ptr, want) in expected {
        let have = got.pointer(ptr);
        let same = match (have, want) {
            (Some(Value::Number(a)), Value::Number(b)) => a.as_f64() == b.as_f64(),
            (Some(a), b) => a == b,
            (None, _) => false,
        };
        if !same {
            return Ok(Some(format!(
                "`{}` is {} in {}, the preset says {want}",
                ptr.trim_start_matches('/').replace('/', "."),
                have.map_or_else(|| "absent".to_string(), Value::to_string),
                path.display()
            )));
        }
    }
    Ok(None)
}

/// Loads every run of `plan`. A run without results, or with fewer epochs than its budget, is
/// listed in `missing` (the caller decides whether that is an error); a run whose `config.json`
/// differs from the preset is refused: an error, never averaged in.
pub fn collect(plan: &Plan) -> Result<Collected> {
    let mut out = Collected {
        runs: plan
            .panels
            .iter()
            .map(|p| vec![ConfigRuns::default(); p.configs.len()])
            .collect(),
        missing: vec![],
    };
    for (pi, panel) in plan.panels.iter().enumerate() {
        for (ci, c) in panel.configs.iter().enumerate() {
            let epochs = plan.protocol_of(c).epochs;
            for seed in 1..=plan.seeds {
                let dir = plan.dir(pi, ci, seed);
                let name = dir.display().to_string();
                if !dir.join("metrics.csv").is_file() || !dir.join("config.json").is_file() {
                    if !out.missing.contains(&format!("{name} (no results)")) {
                        out.missing.push(format!("{name} (no results)"));
                    }
                    continue;
                }
                if let Some(m) = config_mismatch(&dir, &expected_config(plan, pi, ci, seed))? {
                    bail!(
                        "run {name} was trained with another configuration than preset {}: {m}; \
                         move it away (it is not averaged in)",
                        plan.protocol.preset
                    );
                }
                let rows = load_metrics(&dir)?;
                if (rows.len() as u64) < epochs {
                    let why = format!("{name} (unfinished: {} of {epochs} epochs)", rows.len());
                    if !out.missing.contains(&why) {
                        out.missing.push(why);
                    }
                    continue;
                }
                out.runs[pi][ci].seeds.push(rows);
                out.runs[pi][ci].seed_ids.push(seed);
            }
        }
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
        if self.n == 0 {
            return "—".into();
        }
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

/// The claim's verdict for one dataset: LCAM with E/2 epochs against fixed 0.9 with E.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimVerdict {
    /// Final accuracy (%) of fixed 0.9 with the full budget.
    pub sgd: Summary,
    /// Final accuracy (%) of LCAM with half the budget.
    pub lcam: Summary,
    /// LCAM − SGD per seed (percentage points), paired by seed.
    pub diff: Summary,
}

impl ClaimVerdict {
    /// Compares the final accuracies of the panel's two configurations, seed by seed.
    pub fn of(sgd: &ConfigRuns, lcam: &ConfigRuns) -> ClaimVerdict {
        let finals = |r: &ConfigRuns| -> Vec<f64> {
            r.seeds
                .iter()
                .filter_map(|s| s.last())
                .map(|e| 100.0 * e.test_acc)
                .collect()
        };
        let (a, b) = (finals(sgd), finals(lcam));
        // Paired by seed number: a seed missing on either side drops out of the difference.
        let diffs: Vec<f64> = (0..a.len())
            .filter_map(|i| {
                let seed = sgd.seed_of(i);
                (0..b.len())
                    .find(|&j| lcam.seed_of(j) == seed)
                    .map(|j| b[j] - a[i])
            })
            .collect();
        ClaimVerdict {
            sgd: Summary::of(&a),
            lcam: Summary::of(&b),
            diff: Summary::of(&diffs),
        }
    }

    /// The plain sentence: reaches, falls short, or cannot tell.
    pub fn sentence(&self, dataset: &str, sgd_label: &str, lcam_label: &str) -> String {
        let d = &self.diff;
        let nums = format!(
            "{} % vs {} %, difference {} points (95 % CI over {} paired seed(s))",
            self.lcam.show(2),
            self.sgd.show(2),
            d.show(2),
            d.n
        );
        match d.half_width {
            _ if d.n == 0 => format!("{dataset}: no paired runs yet, no verdict."),
            None => {
                format!("{dataset}: one seed only ({nums}); no confidence interval, no verdict.")
            }
            Some(h) if d.mean - h > 0.0 => format!(
                "{dataset}: **yes** — {lcam_label} with half the epochs beats {sgd_label} with all of them: {nums}."
            ),
            Some(h) if d.mean + h < 0.0 => format!(
                "{dataset}: **no** — {lcam_label} with half the epochs falls short of {sgd_label} with all of them: {nums}."
            ),
            Some(_) => format!(
                "{dataset}: **not distinguishable** — {lcam_label} with half the epochs is within noise of {sgd_label} with all of them (the interval includes 0): {nums}."
            ),
        }
    }
}

/// "Half the epochs": one paragraph and table per claim panel.
fn claim_section(plan: &Plan, results: &[PanelRuns]) -> String {
    let mut s = String::new();
    let claim: Vec<usize> = (0..plan.panels.len())
        .filter(|&i| plan.panels[i].figure == super::CLAIM_FIGURE)
        .collect();
    if claim.is_empty() {
        return s;
    }
    let _ = writeln!(
        s,
        "## The claim — LCAM with half the epochs against fixed momentum 0.9\n\n\
         ![the claim: test error and train loss per epoch](claim.png)\n\n\
         Per dataset, fixed momentum 0.9 trained for the preset's {} epochs against the dataset's \
         LCAM preset trained for {} epochs, each with the step schedule scaled to its own \
         budget. The difference is LCAM − SGD in final test accuracy, per seed (seeds pair \
         the initial weights and batch order), with the 95 % CI of its mean.\n",
        plan.protocol.epochs,
        (plan.protocol.epochs / 2).max(1)
    );
    let _ = writeln!(
        s,
        "| dataset | fixed 0.9, {} epochs (%) | LCAM, {} epochs (%) | LCAM − SGD (points) | schedules |\n|---|---|---|---|---|",
        plan.protocol.epochs,
        (plan.protocol.epochs / 2).max(1)
    );
    let mut sentences = vec![];
    for &pi in &claim {
        let panel = &plan.panels[pi];
        let (Some(sgd), Some(lcam)) = (results[pi].first(), results[pi].get(1)) else {
            continue;
        };
        let v = ClaimVerdict::of(sgd, lcam);
        let d = if panel.dataset == "cifar10" {
            "CIFAR-10"
        } else {
            "CIFAR-100"
        };
        let _ = writeln!(
            s,
            "| {d} ({}) | {} | {} | {} | `{}` vs `{}` |",
            panel.configs[1].label().replace(", half the epochs", ""),
            v.sgd.show(2),
            v.lcam.show(2),
            v.diff.show(2),
            plan.schedule(pi, 0),
            plan.schedule(pi, 1)
        );
        sentences.push(v.sentence(
            d,
            &panel.configs[0].label(),
            &panel.configs[1].label().replace(", half the epochs", ""),
        ));
    }
    s.push('\n');
    for t in sentences {
        let _ = writeln!(s, "{t}\n");
    }
    s
}

/// Whether two means agree: their difference within the combined 95 % half-widths
/// (√(h₁² + h₂²)); `None` without two intervals.
pub fn agree(a: &Summary, b: &Summary) -> Option<(bool, f64)> {
    let (ha, hb) = (a.half_width?, b.half_width?);
    let combined = (ha * ha + hb * hb).sqrt();
    Some(((a.mean - b.mean).abs() <= combined, combined))
}

/// lcam's runs beside the PyTorch reference trainer's, configuration by configuration.
fn second_stack_section(plan: &Plan, lcam: &Collected, pt: &Collected, pt_plan: &Plan) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## A second stack: the same runs in plain PyTorch\n\n\
         `scripts/pt_reference_train.py` trains the demo's WRN (`scripts/demo_wrn.py`, the demo's \
         initialisation) with `torch.optim.SGD` and the demo's momentum switch, on the same \
         images, protocol and seeds (its own random streams: weights, batch order and \
         augmentation differ from lcam's draw for draw). Final test accuracy, mean ± 95 % CI:\n"
    );
    let _ = writeln!(
        s,
        "| configuration | lcam (tch) | n | PyTorch | n | difference | agree (within √(h₁²+h₂²)) |\n|---|---|---|---|---|---|---|"
    );
    for (ppi, panel) in pt_plan.panels.iter().enumerate() {
        for (pci, c) in panel.configs.iter().enumerate() {
            // The same configuration in lcam's plan.
            let found = plan.panels.iter().enumerate().find_map(|(pi, p)| {
                (p.dataset == panel.dataset && p.schedule == panel.schedule)
                    .then(|| p.configs.iter().position(|x| x == c).map(|ci| (pi, ci)))
                    .flatten()
            });
            let Some((pi, ci)) = found else { continue };
            let a = config_stats(&lcam.runs[pi][ci], f64::INFINITY).final_acc;
            let b = config_stats(&pt.runs[ppi][pci], f64::INFINITY).final_acc;
            let verdict = match agree(&a, &b) {
                Some((true, w)) => format!("yes (|Δ| ≤ {w:.2})"),
                Some((false, w)) => format!("**no** (|Δ| > {w:.2})"),
                None => "— (needs ≥ 2 seeds each)".into(),
            };
            let _ = writeln!(
                s,
                "| {}, {} | {} | {} | {} | {} | {:.2} | {verdict} |",
                panel.title(),
                c.label(),
                a.show(2),
                a.n,
                b.show(2),
                b.n,
                a.mean - b.mean
            );
        }
    }
    if !pt.missing.is_empty() {
        let _ = writeln!(
            s,
            "\nPyTorch runs missing or unfinished: {}.",
            pt.missing.join("; ")
        );
    }
    s.push('\n');
    s
}

/// The whole `report.md`.
pub fn markdown(plan: &Plan, collected: &Collected, second: Option<(&Collected, &Plan)>) -> String {
    let results = &collected.runs;
    let p = &plan.protocol;
    let mut s = String::new();
    let _ = writeln!(s, "# LCAM reproduction — preset `{}`\n", p.preset);
    if !collected.missing.is_empty() {
        let _ = writeln!(
            s,
            "**PARTIAL REPORT**: {} of the plan's runs are missing or unfinished; every table \
             below summarises only the complete runs (its `n` says how many).\n",
            collected.missing.len()
        );
        for m in &collected.missing {
            let _ = writeln!(s, "- {m}");
        }
        s.push('\n');
    }
    let claim = claim_section(plan, results);
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
    s.push_str(&claim);
    for (panel, runs) in plan.panels.iter().zip(results) {
        if panel.figure == super::CLAIM_FIGURE {
            continue;
        }
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
            "| configuration | n | final test acc (%) | best test acc (%) | epoch of best | epochs to reach {:.2} % | final train loss | below-mean steps, last epoch (%) |",
            baseline
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
        for (c, r) in panel.configs.iter().zip(runs) {
            let st = config_stats(r, baseline);
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                c.label(),
                st.final_acc.n,
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
    if let Some((pt, pt_plan)) = second {
        s.push_str(&second_stack_section(plan, collected, pt, pt_plan));
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
    fn the_claim_verdict_is_a_paired_difference_with_its_interval() {
        let runs = |finals: &[f64]| ConfigRuns {
            seeds: finals.iter().map(|&a| run(&[0.1, a])).collect(),
            seed_ids: vec![],
        };
        // LCAM falls short on every seed: the whole interval is below 0.
        let v = ClaimVerdict::of(&runs(&[0.60, 0.62, 0.61]), &runs(&[0.50, 0.53, 0.49]));
        assert!((v.diff.mean + 10.333_333).abs() < 1e-4, "{v:?}");
        let s = v.sentence("CIFAR-10", "fixed 0.9", "LCAM 0.9/0.95");
        assert!(s.starts_with("CIFAR-10: **no**"), "{s}");
        assert!(s.contains("-10.33 ± "), "{s}");
        // Differences that straddle 0: not distinguishable.
        let v = ClaimVerdict::of(&runs(&[0.60, 0.62, 0.61]), &runs(&[0.62, 0.60, 0.615]));
        let s = v.sentence("CIFAR-10", "fixed 0.9", "LCAM 0.9/0.95");
        assert!(s.contains("**not distinguishable**"), "{s}");
        // Better on every seed by a margin: yes.
        let v = ClaimVerdict::of(&runs(&[0.60, 0.62, 0.61]), &runs(&[0.65, 0.67, 0.655]));
        assert!(v.sentence("C", "a", "b").contains("**yes**"));
        // Pairs are formed by seed: a noisy seed effect common to both cancels.
        let v = ClaimVerdict::of(&runs(&[0.40, 0.60, 0.80]), &runs(&[0.41, 0.61, 0.81]));
        let h = v.diff.half_width.expect("3 seeds");
        assert!(h < 1e-9 && v.diff.mean > 0.99, "{v:?}");
        // One seed: no interval, no verdict.
        let v = ClaimVerdict::of(&runs(&[0.6]), &runs(&[0.5]));
        assert!(v.sentence("C", "a", "b").contains("no verdict"));
        // Seeds pair by number, not position: SGD has seed 2 only, LCAM seeds 1 and 2.
        let sgd = ConfigRuns {
            seeds: vec![run(&[0.1, 0.6])],
            seed_ids: vec![2],
        };
        let lcam = ConfigRuns {
            seeds: vec![run(&[0.1, 0.2]), run(&[0.1, 0.55])],
            seed_ids: vec![1, 2],
        };
        let v = ClaimVerdict::of(&sgd, &lcam);
        assert_eq!(v.diff.n, 1);
        assert!((v.diff.mean + 5.0).abs() < 1e-9, "{v:?}");
    }

    #[test]
    fn two_stacks_agree_within_the_combined_interval() {
        let a = Summary::of(&[50.0, 52.0, 54.0]);
        let b = Summary::of(&[51.0, 53.0, 55.0]);
        let (ok, w) = agree(&a, &b).expect("intervals");
        assert!(ok && w > 1.0, "{w}");
        let c = Summary::of(&[60.0, 60.5, 61.0]);
        assert_eq!(agree(&a, &c).map(|x| x.0), Some(false));
        assert_eq!(agree(&a, &Summary::of(&[1.0])), None);
    }

    #[test]
    fn best_final_and_reach() {
        let runs = ConfigRuns {
            seeds: vec![run(&[0.1, 0.5, 0.4]), run(&[0.2, 0.3, 0.6])],
            seed_ids: vec![],
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
                seed_ids: vec![],
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
