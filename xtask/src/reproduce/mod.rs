//! `cargo xtask reproduce`: the paper's Figures 3–5 (SPEC §3) as `lcam train` runs, several
//! seeds each, summarised in `report.md` and drawn as PNG + SVG figures.
//!
//! Layout of the output directory (`--out`, default `runs/reproduce/<preset>`):
//!
//! ```text
//! <out>/cifar10-step/fixed-0.9/seed-1/         one `lcam train` run directory each
//! <out>/cifar10-step/lcam-0.9-0.95-half/seed-1/ the claim's LCAM run: half the epochs
//! <out>/report.md                               tables: mean ± 95 % CI over seeds
//! <out>/fig3.png, fig3.svg, …, claim.png        test error and train loss per epoch
//! <out>/provenance.md                           the command and commit of every invocation
//! ```
//!
//! A run directory is named by what the run is (dataset, schedule, momenta, budget), so a run
//! that two panels show (fixed 0.9 on CIFAR-10's step schedule: Figure 3 and the claim) runs
//! once. Runs are resumable: a run directory that holds a checkpoint (`LATEST`) is continued with
//! `lcam train --resume` (a finished one does no work; a different configuration is refused by
//! `lcam` itself), so an interrupted `reproduce` picks up where it stopped. `--jobs N` runs N
//! `lcam train` processes at once (each with `--threads`), their output in `<run>.log` (e.g.
//! `seed-1.log` beside `seed-1/`).

mod plot;
mod report;

pub use report::load_metrics;

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

/// Images in the CIFAR-10/100 training split (both).
const CIFAR_TRAIN: usize = 50_000;
/// Images in the test split.
const CIFAR_TEST: usize = 10_000;

/// Which protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// The paper's protocol exactly: WRN-28-10, full data, 150 epochs (GPU machines).
    Paper,
    /// A proportionally scaled protocol for a 2-core CPU: ≤ 60 minutes per figure.
    Mini,
    /// The whole pipeline in a few minutes: tiny model, few images, 5 epochs.
    Smoke,
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Preset::Paper => "paper",
            Preset::Mini => "mini",
            Preset::Smoke => "smoke",
        })
    }
}

/// Which figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FigureSel {
    /// Figure 3: CIFAR-10, step schedule.
    #[value(name = "3")]
    Fig3,
    /// Figure 4: CIFAR-100, step schedule.
    #[value(name = "4")]
    Fig4,
    /// Figure 5: CIFAR-10 and CIFAR-100, exponential schedule.
    #[value(name = "5")]
    Fig5,
    /// The claim itself: fixed 0.9 with E epochs against LCAM (the dataset's preset pair) with
    /// E/2, each with the step schedule scaled to its own budget.
    #[value(name = "claim")]
    Claim,
    /// All of them.
    All,
}

/// Training backend passed to `lcam train --backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// libtorch through tch.
    Tch,
    /// Burn's pure-Rust CPU backend.
    Burn,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Tch => "tch",
            Backend::Burn => "burn",
        })
    }
}

/// Arguments of `cargo xtask reproduce`.
#[derive(Debug, Args)]
pub struct ReproduceArgs {
    /// Protocol: `paper` (exact, GPU), `mini` (≤ 60 min per figure on a small CPU), `smoke`.
    #[arg(long, value_enum)]
    pub preset: Preset,
    /// Which figure(s) of the paper.
    #[arg(long, value_enum, default_value_t = FigureSel::All)]
    pub figure: FigureSel,
    /// Seeds per configuration (default: 3, smoke 2).
    #[arg(long)]
    pub seeds: Option<u32>,
    /// Training backend.
    #[arg(long, value_enum, default_value_t = Backend::Tch)]
    pub backend: Backend,
    /// Device for `lcam train` (default: `cuda` for `paper`, else `cpu`).
    #[arg(long)]
    pub device: Option<String>,
    /// Output directory (default: `runs/reproduce/<preset>` in the workspace).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Dataset directory (default: $LCAM_DATA_DIR, else <cache>/data); missing datasets are
    /// downloaded.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Only rebuild `report.md` and the figures from the runs already in `--out` (missing or
    /// unfinished runs are named and the report is marked partial).
    #[arg(long)]
    pub report_only: bool,
    /// `lcam train` processes at once.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// `lcam train --threads` of each process (default: the backend's, all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Train the second stack's runs instead of lcam's: the PyTorch reference trainer
    /// (scripts/pt_reference_train.py: the demo's model, torch's SGD, the demo's momentum
    /// switch) on CIFAR-10's step schedule, fixed 0.9 and LCAM 0.9/0.95, into `<out>/pytorch`.
    /// The report compares them with lcam's.
    #[arg(long)]
    pub pytorch: bool,
    /// Train with this `lcam` binary instead of building one (e.g. a copy kept aside for a
    /// run of hours, so that a rebuild cannot swap it mid-run).
    #[arg(long)]
    pub lcam: Option<PathBuf>,
}

/// The protocol of a preset: everything but the momentum configurations.
#[derive(Debug, Clone, PartialEq)]
pub struct Protocol {
    /// Preset name.
    pub preset: Preset,
    /// `wrn-D-K`.
    pub model: &'static str,
    /// Epochs per run.
    pub epochs: u64,
    /// Training images (the first N of the split).
    pub train_images: usize,
    /// Test images (the first N of the split).
    pub test_images: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Base learning rate.
    pub lr: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// Default seeds per configuration.
    pub seeds: u32,
}

impl Protocol {
    /// The protocol of `preset`.
    pub fn of(preset: Preset) -> Protocol {
        let paper = Protocol {
            preset,
            model: "wrn-28-10",
            epochs: 150,
            train_images: CIFAR_TRAIN,
            test_images: CIFAR_TEST,
            batch_size: 128,
            lr: 0.1,
            weight_decay: 5e-4,
            seeds: 3,
        };
        match preset {
            Preset::Paper => paper,
            // WRN-16-1 at ≈ 600 img/s on 2 cores: 12 runs × 12 epochs × (10k train + 5k test)
            // ≈ 45 min per figure.
            Preset::Mini => Protocol {
                model: "wrn-16-1",
                epochs: 12,
                train_images: 10_000,
                test_images: 5_000,
                ..paper
            },
            // WRN-10-1 at ≈ 1000 img/s: 24 runs × 5 epochs × 1024 images ≈ 3 min in all.
            Preset::Smoke => Protocol {
                model: "wrn-10-1",
                epochs: 5,
                train_images: 1_024,
                test_images: 1_000,
                seeds: 2,
                ..paper
            },
        }
    }

    /// The same protocol with `epochs` epochs (the schedules scale with it).
    pub fn with_epochs(&self, epochs: u64) -> Protocol {
        Protocol {
            epochs,
            ..self.clone()
        }
    }

    /// Steps per epoch (the last partial batch is kept).
    pub fn steps_per_epoch(&self) -> u64 {
        self.train_images.div_ceil(self.batch_size) as u64
    }

    /// The demo's step schedule (× 0.2 after epochs 31, 61, 91 of 150), its milestones scaled
    /// to `epochs` and rounded (`step:0.2@31,61,91` for the paper's 150 epochs).
    pub fn step_schedule(&self) -> String {
        let mut after: Vec<u64> = [31u64, 61, 91]
            .iter()
            .map(|&m| ((m * self.epochs) as f64 / 150.0).round().max(1.0) as u64)
            .filter(|&m| m < self.epochs)
            .collect();
        after.dedup();
        if after.is_empty() {
            return "constant".to_string();
        }
        let list: Vec<String> = after.iter().map(u64::to_string).collect();
        format!("step:0.2@{}", list.join(","))
    }

    /// The demo's exponential schedule (lr × 0.99985 before every step from epoch 32 of 150):
    /// the constant phase scaled like the step milestones, and γ chosen so that the total decay
    /// over the decaying steps equals the paper's (0.99985^(391·119) ≈ 9.3e-4).
    pub fn exp_schedule(&self) -> String {
        let from = ((31 * self.epochs) as f64 / 150.0).round() as u64 + 1;
        let from = from.clamp(1, self.epochs);
        let paper_steps = (391 * 119) as f64;
        let steps = (self.steps_per_epoch() * (self.epochs - from + 1)) as f64;
        let gamma = if steps == paper_steps {
            0.99985
        } else {
            (0.99985f64.ln() * paper_steps / steps).exp()
        };
        // Shortest decimal form that reads back exactly as the same f64.
        format!("exp:{gamma}@{from}")
    }
}

/// The LR schedule of a panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleKind {
    /// × 0.2 at three milestones.
    Step,
    /// Per-step exponential decay after a constant phase.
    Exp,
}

/// One momentum configuration (a line in the paper's figures).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MomentumConfig {
    /// μ after a below-mean batch.
    pub below: f64,
    /// μ after an at-or-above-mean batch.
    pub above: f64,
    /// Trained for half the preset's epochs (the claim's LCAM run).
    pub half: bool,
}

impl MomentumConfig {
    const fn fixed(mu: f64) -> Self {
        MomentumConfig {
            below: mu,
            above: mu,
            half: false,
        }
    }
    const fn lcam(below: f64, above: f64) -> Self {
        MomentumConfig {
            below,
            above,
            half: false,
        }
    }
    const fn halved(self) -> Self {
        MomentumConfig { half: true, ..self }
    }
    /// Plain SGD (equal momenta).
    pub fn is_fixed(&self) -> bool {
        self.below == self.above
    }
    /// The label of the paper's legends: `fixed 0.9`, `LCAM 0.95/0.9`; `…, half the epochs`.
    pub fn label(&self) -> String {
        let base = if self.is_fixed() {
            format!("fixed {}", self.below)
        } else {
            format!("LCAM {}/{}", self.below, self.above)
        };
        if self.half {
            format!("{base}, half the epochs")
        } else {
            base
        }
    }
    /// Directory name: `fixed-0.9`, `lcam-0.95-0.9`, `lcam-0.9-0.95-half`.
    pub fn slug(&self) -> String {
        let base = if self.is_fixed() {
            format!("fixed-{}", self.below)
        } else {
            format!("lcam-{}-{}", self.below, self.above)
        };
        if self.half {
            format!("{base}-half")
        } else {
            base
        }
    }
}

/// The figure number of the claim figure (`claim.png`), after the paper's 3–5.
pub const CLAIM_FIGURE: u8 = 6;

/// The file name (without extension) of figure `fig`: `fig3`, …, `claim`.
pub fn figure_name(fig: u8) -> String {
    if fig == CLAIM_FIGURE {
        "claim".into()
    } else {
        format!("fig{fig}")
    }
}

/// One panel of a figure: a dataset under a schedule, several configurations.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// The paper's figure number ([`CLAIM_FIGURE`] for the claim figure).
    pub figure: u8,
    /// `cifar10` or `cifar100` (the `lcam train --dataset` value).
    pub dataset: &'static str,
    /// Schedule.
    pub schedule: ScheduleKind,
    /// Configurations; the first is the fixed-0.9 baseline.
    pub configs: Vec<MomentumConfig>,
}

impl Panel {
    /// Directory name: `cifar10-step` (shared by the panels of the same dataset and schedule).
    pub fn slug(&self) -> String {
        let s = match self.schedule {
            ScheduleKind::Step => "step",
            ScheduleKind::Exp => "exp",
        };
        format!("{}-{s}", self.dataset)
    }
    /// `CIFAR-10, step schedule`.
    pub fn title(&self) -> String {
        let d = if self.dataset == "cifar10" {
            "CIFAR-10"
        } else {
            "CIFAR-100"
        };
        let s = match self.schedule {
            ScheduleKind::Step => "step schedule",
            ScheduleKind::Exp => "exponential schedule",
        };
        if self.figure == CLAIM_FIGURE {
            format!("{d}, {s}s scaled to each budget")
        } else {
            format!("{d}, {s}")
        }
    }
}

/// The runs of SPEC §3's table.
pub fn panels(sel: FigureSel) -> Vec<Panel> {
    let four = vec![
        MomentumConfig::fixed(0.9),
        MomentumConfig::fixed(0.95),
        MomentumConfig::lcam(0.95, 0.9),
        MomentumConfig::lcam(0.9, 0.95),
    ];
    let all = vec![
        Panel {
            figure: 3,
            dataset: "cifar10",
            schedule: ScheduleKind::Step,
            configs: four.clone(),
        },
        Panel {
            figure: 4,
            dataset: "cifar100",
            schedule: ScheduleKind::Step,
            configs: four,
        },
        Panel {
            figure: 5,
            dataset: "cifar10",
            schedule: ScheduleKind::Exp,
            configs: vec![MomentumConfig::fixed(0.9), MomentumConfig::lcam(0.9, 0.95)],
        },
        Panel {
            figure: 5,
            dataset: "cifar100",
            schedule: ScheduleKind::Exp,
            configs: vec![MomentumConfig::fixed(0.9), MomentumConfig::lcam(0.93, 0.9)],
        },
        // The claim: SGD with E epochs against the dataset's LCAM preset (lcam-core's
        // `LcamConfig::cifar10()` 0.9/0.95, `cifar100()` 0.93/0.9) with E/2.
        Panel {
            figure: CLAIM_FIGURE,
            dataset: "cifar10",
            schedule: ScheduleKind::Step,
            configs: vec![
                MomentumConfig::fixed(0.9),
                MomentumConfig::lcam(0.9, 0.95).halved(),
            ],
        },
        Panel {
            figure: CLAIM_FIGURE,
            dataset: "cifar100",
            schedule: ScheduleKind::Step,
            configs: vec![
                MomentumConfig::fixed(0.9),
                MomentumConfig::lcam(0.93, 0.9).halved(),
            ],
        },
    ];
    let want = match sel {
        FigureSel::Fig3 => Some(3),
        FigureSel::Fig4 => Some(4),
        FigureSel::Fig5 => Some(5),
        FigureSel::Claim => Some(CLAIM_FIGURE),
        FigureSel::All => None,
    };
    all.into_iter()
        .filter(|p| want.is_none_or(|f| p.figure == f))
        .collect()
}

/// One `lcam train` run of the plan.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// Index of its panel.
    pub panel: usize,
    /// Index of its configuration in the panel.
    pub config: usize,
    /// Seed (1-based; the same seeds for every configuration: paired comparisons).
    pub seed: u32,
    /// Run directory.
    pub dir: PathBuf,
}

/// Everything `reproduce` does, resolved.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The protocol.
    pub protocol: Protocol,
    /// Panels to run.
    pub panels: Vec<Panel>,
    /// Seeds per configuration.
    pub seeds: u32,
    /// Backend.
    pub backend: Backend,
    /// Device.
    pub device: String,
    /// Output directory.
    pub out: PathBuf,
    /// Runs in the order they are trained: the claim's first, then the figures', each group
    /// seed-major (every configuration gets seed 1 before any gets 2); a run that several
    /// panels show appears once.
    pub runs: Vec<RunSpec>,
    /// `lcam train` processes at once.
    pub jobs: usize,
    /// `--threads` of each.
    pub threads: Option<usize>,
    /// Whose runs: lcam's or the PyTorch reference trainer's.
    pub stack: Stack,
}

/// Which trainer a plan's runs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    /// `lcam train`.
    Lcam,
    /// scripts/pt_reference_train.py (the second stack).
    Pytorch,
}

/// The PyTorch cross-check's panel: CIFAR-10, step schedule, fixed 0.9 and LCAM 0.9/0.95.
fn pytorch_panels() -> Vec<Panel> {
    vec![Panel {
        figure: 3,
        dataset: "cifar10",
        schedule: ScheduleKind::Step,
        configs: vec![MomentumConfig::fixed(0.9), MomentumConfig::lcam(0.9, 0.95)],
    }]
}

/// How a plan's runs are trained.
#[derive(Debug, Clone)]
pub enum Runner {
    /// The `lcam` binary.
    Lcam(PathBuf),
    /// A python with torch, running scripts/pt_reference_train.py from the workspace `root`.
    Python {
        /// The interpreter.
        python: PathBuf,
        /// The workspace root.
        root: PathBuf,
    },
}

impl Plan {
    /// Resolves the arguments.
    pub fn new(args: &ReproduceArgs, root: &Path) -> Result<Plan> {
        let protocol = Protocol::of(args.preset);
        let seeds = args.seeds.unwrap_or(protocol.seeds);
        if seeds == 0 {
            bail!("--seeds must be >= 1");
        }
        if args.jobs == 0 {
            bail!("--jobs must be >= 1");
        }
        let device = args.device.clone().unwrap_or_else(|| {
            if args.preset == Preset::Paper {
                "cuda".into()
            } else {
                "cpu".into()
            }
        });
        let out = args.out.clone().unwrap_or_else(|| {
            root.join("runs")
                .join("reproduce")
                .join(args.preset.to_string())
        });
        let (panels, out, stack) = if args.pytorch {
            (pytorch_panels(), out.join("pytorch"), Stack::Pytorch)
        } else {
            (panels(args.figure), out, Stack::Lcam)
        };
        let mut runs: Vec<RunSpec> = vec![];
        for claim in [true, false] {
            for seed in 1..=seeds {
                for (pi, p) in panels.iter().enumerate() {
                    if (p.figure == CLAIM_FIGURE) != claim {
                        continue;
                    }
                    for ci in 0..p.configs.len() {
                        let dir = run_dir(&out, p, ci, seed);
                        if runs.iter().all(|r| r.dir != dir) {
                            runs.push(RunSpec {
                                panel: pi,
                                config: ci,
                                seed,
                                dir,
                            });
                        }
                    }
                }
            }
        }
        Ok(Plan {
            protocol,
            panels,
            seeds,
            backend: args.backend,
            device,
            out,
            runs,
            jobs: args.jobs,
            threads: args.threads,
            stack,
        })
    }

    /// The second stack's plan next to this one (`<out>/pytorch`), when this is lcam's.
    pub fn pytorch_twin(&self) -> Option<Plan> {
        (self.stack == Stack::Lcam).then(|| Plan {
            panels: pytorch_panels(),
            out: self.out.join("pytorch"),
            runs: vec![],
            stack: Stack::Pytorch,
            ..self.clone()
        })
    }

    /// The PyTorch reference trainer's arguments for `run` (after the script's path).
    pub fn pytorch_args(&self, run: &RunSpec, data_dir: &Path) -> Vec<String> {
        let panel = &self.panels[run.panel];
        let c = panel.configs[run.config];
        let p = self.protocol_of(&c);
        let mut a: Vec<String> = [
            "--dataset",
            panel.dataset,
            "--data",
            &data_dir.display().to_string(),
            "--model",
            p.model,
            "--epochs",
            &p.epochs.to_string(),
            "--batch-size",
            &p.batch_size.to_string(),
            "--lr",
            &p.lr.to_string(),
            "--weight-decay",
            &p.weight_decay.to_string(),
            "--schedule",
            &self.schedule(run.panel, run.config),
            "--momentum-below",
            &c.below.to_string(),
            "--momentum-above",
            &c.above.to_string(),
            "--limit-train",
            &p.train_images.to_string(),
            "--limit-test",
            &p.test_images.to_string(),
            "--seed",
            &run.seed.to_string(),
            "--out",
            &run.dir.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(t) = self.threads {
            a.extend(["--threads".into(), t.to_string()]);
        }
        a
    }

    /// The run directory of configuration `config` of panel `panel`, seed `seed`.
    pub fn dir(&self, panel: usize, config: usize, seed: u32) -> PathBuf {
        run_dir(&self.out, &self.panels[panel], config, seed)
    }

    /// The protocol a configuration trains under (half the epochs for the claim's LCAM run).
    pub fn protocol_of(&self, c: &MomentumConfig) -> Protocol {
        if c.half {
            self.protocol.with_epochs((self.protocol.epochs / 2).max(1))
        } else {
            self.protocol.clone()
        }
    }

    /// The schedule string of configuration `config` of panel `panel`.
    pub fn schedule(&self, panel: usize, config: usize) -> String {
        let p = &self.panels[panel];
        let proto = self.protocol_of(&p.configs[config]);
        match p.schedule {
            ScheduleKind::Step => proto.step_schedule(),
            ScheduleKind::Exp => proto.exp_schedule(),
        }
    }

    /// The `lcam train` arguments of `run`.
    pub fn train_args(&self, run: &RunSpec, data_dir: &Path) -> Vec<String> {
        let panel = &self.panels[run.panel];
        let c = panel.configs[run.config];
        let p = &self.protocol_of(&c);
        let schedule = self.schedule(run.panel, run.config);
        let mut a: Vec<String> = vec![
            "train".into(),
            "--backend".into(),
            self.backend.to_string(),
            "--device".into(),
            self.device.clone(),
            "--dataset".into(),
            panel.dataset.into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--model".into(),
            p.model.into(),
            "--epochs".into(),
            p.epochs.to_string(),
            "--batch-size".into(),
            p.batch_size.to_string(),
            "--lr".into(),
            p.lr.to_string(),
            "--weight-decay".into(),
            p.weight_decay.to_string(),
            "--schedule".into(),
            schedule,
            "--seed".into(),
            run.seed.to_string(),
            "--out".into(),
            run.dir.display().to_string(),
        ];
        if c.is_fixed() {
            a.extend(["--optimizer".into(), "sgd".into()]);
            a.extend(["--momentum".into(), c.below.to_string()]);
        } else {
            a.extend(["--optimizer".into(), "lcam".into()]);
            a.extend(["--momentum-below".into(), c.below.to_string()]);
            a.extend(["--momentum-above".into(), c.above.to_string()]);
        }
        if p.train_images < CIFAR_TRAIN {
            a.extend(["--limit-train".into(), p.train_images.to_string()]);
        }
        if p.test_images < CIFAR_TEST {
            a.extend(["--limit-test".into(), p.test_images.to_string()]);
        }
        if let Some(t) = self.threads {
            a.extend(["--threads".into(), t.to_string()]);
        }
        if run.dir.join("LATEST").is_file() {
            a.push("--resume".into());
        } else if run.dir.exists() {
            // Killed before its first checkpoint (or copied back without checkpoints): nothing
            // to resume from.
            a.push("--force".into());
        }
        a
    }

    /// The datasets the plan needs.
    pub fn datasets(&self) -> Vec<&'static str> {
        let mut d: Vec<&'static str> = self.panels.iter().map(|p| p.dataset).collect();
        d.sort_unstable();
        d.dedup();
        d
    }
}

/// The directory of configuration `ci` of `panel`, seed `seed`, under `out`.
fn run_dir(out: &Path, panel: &Panel, ci: usize, seed: u32) -> PathBuf {
    out.join(panel.slug())
        .join(panel.configs[ci].slug())
        .join(format!("seed-{seed}"))
}

/// Whether `run` has every epoch of its budget in `metrics.csv`.
fn finished(plan: &Plan, run: &RunSpec) -> bool {
    let c = &plan.panels[run.panel].configs[run.config];
    load_metrics(&run.dir).is_ok_and(|m| m.len() as u64 >= plan.protocol_of(c).epochs)
}

/// Trains one run; with `log`, its output goes to `<run>.log` beside the run directory.
fn train_one(
    plan: &Plan,
    run: &RunSpec,
    runner: &Runner,
    data_dir: &Path,
    log: bool,
) -> Result<()> {
    let panel = &plan.panels[run.panel];
    let what = format!(
        "{} {} seed {}",
        panel.title(),
        panel.configs[run.config].label(),
        run.seed
    );
    // A complete run needs nothing (it may hold only its config.json and metrics.csv: e.g.
    // copied back from committed results, without checkpoints).
    if finished(plan, run) {
        return Ok(());
    }
    let (program, args) = match runner {
        Runner::Lcam(lcam) => (lcam.clone(), plan.train_args(run, data_dir)),
        Runner::Python { python, root } => {
            let mut a = vec![
                root.join("scripts")
                    .join("pt_reference_train.py")
                    .display()
                    .to_string(),
            ];
            a.extend(plan.pytorch_args(run, data_dir));
            (python.clone(), a)
        }
    };
    let lcam = &program;
    let mut cmd = Command::new(lcam);
    cmd.args(&args);
    if log {
        // Beside the run directory, not in it: `lcam train` refuses a non-empty new directory.
        let path = run.dir.with_extension("log");
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let f2 = f
            .try_clone()
            .with_context(|| format!("cannot open {}", path.display()))?;
        cmd.stdout(f).stderr(f2);
    }
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {}", lcam.display()))?;
    if !status.success() {
        bail!(
            "run {what} failed ({status}); its directory {} is kept, rerun to resume. Command: {} {}",
            run.dir.display(),
            lcam.display(),
            args.join(" ")
        );
    }
    Ok(())
}

/// Appends the command line, the commit and the date of this invocation to
/// `<out>/provenance.md`.
fn record_provenance(plan: &Plan) -> Result<()> {
    use std::io::Write as _;
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".into())
    };
    let commit = git(&["rev-parse", "HEAD"]);
    let dirty = if git(&["status", "--porcelain", "--untracked-files=no"]).is_empty() {
        ""
    } else {
        " (with uncommitted changes)"
    };
    let date = git(&["log", "-1", "--format=%cI"]);
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let path = plan.out.join("provenance.md");
    let new = !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let mut text = String::new();
    if new {
        text.push_str(
            "# How these runs were produced\n\nOne line per `cargo xtask reproduce` invocation \
             that trained into this directory (runs resume, so a set may span several).\n\n",
        );
    }
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    text.push_str(&format!(
        "- `cargo xtask {}` at commit `{commit}`{dirty} (committed {date}), started at unix time {started}, {} job(s)\n",
        argv.join(" "),
        plan.jobs
    ));
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Runs every run of `plan` with the `lcam` binary (unless `report_only`), then writes the
/// report and the figures. `report_only` accepts missing and unfinished runs (the report names
/// them and says it is partial); after training, every run must be complete.
pub fn run(plan: &Plan, lcam: Option<&Runner>, data_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(&plan.out)
        .with_context(|| format!("cannot create {}", plan.out.display()))?;
    if let Some(lcam) = lcam {
        record_provenance(plan)?;
        let start = Instant::now();
        let n = plan.runs.len();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let failed = std::sync::Mutex::new(Vec::<anyhow::Error>::new());
        let log = plan.jobs > 1;
        std::thread::scope(|s| {
            for _ in 0..plan.jobs {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let Some(run) = plan.runs.get(i) else { break };
                        if failed.lock().map(|f| !f.is_empty()).unwrap_or(true) {
                            break;
                        }
                        let panel = &plan.panels[run.panel];
                        eprintln!(
                            "xtask: [{}/{n}] {} {} seed {} ({:.0}s elapsed) -> {}",
                            i + 1,
                            panel.title(),
                            panel.configs[run.config].label(),
                            run.seed,
                            start.elapsed().as_secs_f64(),
                            run.dir.display()
                        );
                        if let Err(e) = train_one(plan, run, lcam, data_dir, log)
                            && let Ok(mut f) = failed.lock()
                        {
                            f.push(e);
                        }
                    }
                });
            }
        });
        let mut failed = failed
            .into_inner()
            .map_err(|_| anyhow::anyhow!("a worker thread panicked"))?;
        if let Some(e) = failed.pop() {
            return Err(e);
        }
    }
    let results = report::collect(plan)?;
    if lcam.is_some() && !results.missing.is_empty() {
        bail!(
            "after training, {} run(s) are not complete: {}",
            results.missing.len(),
            results.missing.join("; ")
        );
    }
    if plan.stack == Stack::Pytorch {
        eprintln!(
            "xtask: the PyTorch runs in {} are complete; `cargo xtask reproduce --report-only` \
             (without --pytorch) puts them beside lcam's in report.md",
            plan.out.display()
        );
        return Ok(());
    }
    // The second stack, when its runs are there.
    let second = match plan.pytorch_twin() {
        Some(t) if t.out.is_dir() => Some((report::collect(&t)?, t)),
        _ => None,
    };
    let report_path = plan.out.join("report.md");
    let mut figures = vec![];
    for fig in plan
        .panels
        .iter()
        .map(|p| p.figure)
        .collect::<Vec<_>>()
        .iter()
    {
        if figures.contains(fig) {
            continue;
        }
        figures.push(*fig);
        let name = figure_name(*fig);
        plot::figure(plan, &results.runs, *fig, &plan.out.join(&name))
            .with_context(|| format!("cannot draw {name}"))?;
    }
    write_atomic(
        &report_path,
        report::markdown(plan, &results, second.as_ref().map(|(c, t)| (c, t))).as_bytes(),
    )?;
    eprintln!(
        "xtask: report {} and figures {} written{}",
        report_path.display(),
        figures
            .iter()
            .map(|f| format!("{}.png/.svg", figure_name(*f)))
            .collect::<Vec<_>>()
            .join(", "),
        if results.missing.is_empty() {
            String::new()
        } else {
            format!(
                " (PARTIAL: {} run(s) missing or unfinished: {})",
                results.missing.len(),
                results.missing.join("; ")
            )
        }
    );
    Ok(())
}

/// Writes `contents` to a temporary file next to `path` and renames it into place.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    tmp.write_all(contents)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", tmp.path().display()))?;
    // Temporary files are created 0600; results are ordinary readable files.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("cannot set permissions of {}", tmp.path().display()))?;
    }
    tmp.persist(path)
        .with_context(|| format!("cannot rename into {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_preset_is_the_demo_protocol() {
        let p = Protocol::of(Preset::Paper);
        assert_eq!(p.steps_per_epoch(), 391);
        assert_eq!(p.step_schedule(), "step:0.2@31,61,91");
        assert_eq!(p.exp_schedule(), "exp:0.99985@32");
        assert_eq!(
            (p.model, p.epochs, p.train_images, p.test_images),
            ("wrn-28-10", 150, 50_000, 10_000)
        );
    }

    #[test]
    fn scaled_schedules_keep_the_shape() {
        let m = Protocol::of(Preset::Mini);
        // 31/150, 61/150, 91/150 of 12 epochs, rounded.
        assert_eq!(m.step_schedule(), "step:0.2@2,5,7");
        let s = Protocol::of(Preset::Smoke);
        assert_eq!(s.step_schedule(), "step:0.2@1,2,3");
        // The total decay of the exponential phase equals the paper's.
        for p in [m, s] {
            let e = p.exp_schedule();
            let (g, from) = e
                .strip_prefix("exp:")
                .and_then(|r| r.split_once('@'))
                .expect("exp:G@E");
            let g: f64 = g.parse().expect("gamma");
            let from: u64 = from.parse().expect("epoch");
            let steps = p.steps_per_epoch() * (p.epochs - from + 1);
            let total = g.powf(steps as f64);
            let paper = 0.99985f64.powf((391 * 119) as f64);
            assert!(
                (total / paper - 1.0).abs() < 1e-9,
                "{e}: {total} vs {paper}"
            );
        }
    }

    #[test]
    fn plan_covers_spec_table() {
        let args = ReproduceArgs {
            preset: Preset::Smoke,
            figure: FigureSel::All,
            seeds: None,
            backend: Backend::Tch,
            device: None,
            out: Some(PathBuf::from("/tmp/x")),
            data_dir: None,
            report_only: false,
            jobs: 1,
            threads: None,
            pytorch: false,
            lcam: None,
        };
        let plan = Plan::new(&args, Path::new("/r")).expect("plan");
        // 4 + 4 + 2 + 2 configurations, plus the claim's two half-budget LCAM runs (its fixed
        // 0.9 runs are Figure 3's and 4's), × 2 seeds.
        assert_eq!(plan.runs.len(), 28);
        let mut dirs: Vec<&PathBuf> = plan.runs.iter().map(|r| &r.dir).collect();
        dirs.sort();
        dirs.dedup();
        assert_eq!(dirs.len(), 28, "every run once");
        assert_eq!(plan.datasets(), vec!["cifar10", "cifar100"]);
        // The claim's runs come first: SGD with E epochs, then LCAM with E/2.
        let first = &plan.runs[0];
        assert_eq!(
            first.dir,
            PathBuf::from("/tmp/x/cifar10-step/fixed-0.9/seed-1")
        );
        let a = plan.train_args(&plan.runs[0], Path::new("/d")).join(" ");
        assert!(
            a.contains("--epochs 5 ") && a.contains("--schedule step:0.2@1,2,3"),
            "{a}"
        );
        let half = &plan.runs[1];
        assert_eq!(
            half.dir,
            PathBuf::from("/tmp/x/cifar10-step/lcam-0.9-0.95-half/seed-1")
        );
        let a = plan.train_args(half, Path::new("/d")).join(" ");
        // 5 / 2 = 2 epochs, milestones 31/150 · 2 → 0 (clamped to 1) and 61/150 · 2 → 1.
        assert!(
            a.contains("--epochs 2 ") && a.contains("--schedule step:0.2@1 "),
            "{a}"
        );
        assert!(
            a.contains("--momentum-below 0.9 --momentum-above 0.95"),
            "{a}"
        );
        let c100 = plan.train_args(&plan.runs[3], Path::new("/d")).join(" ");
        assert!(
            c100.contains("--dataset cifar100")
                && c100.contains("--momentum-below 0.93 --momentum-above 0.9"),
            "{c100}"
        );
        // Then Figure 3 onwards (its fixed 0.9 already planned).
        let r = plan
            .runs
            .iter()
            .find(|r| plan.panels[r.panel].configs[r.config].label() == "LCAM 0.95/0.9")
            .expect("fig 3 run");
        let a = plan.train_args(r, Path::new("/d")).join(" ");
        assert!(a.contains("--optimizer lcam --momentum-below 0.95 --momentum-above 0.9"));
        assert!(a.contains("--schedule step:0.2@1,2,3"), "{a}");
        assert!(a.contains("--limit-train 1024 --limit-test 1000"), "{a}");
        assert!(!a.contains("--resume") && !a.contains("--force") && !a.contains("--threads"));
        let threaded = Plan::new(
            &ReproduceArgs {
                threads: Some(1),
                ..args_clone(&args)
            },
            Path::new("/r"),
        )
        .expect("plan");
        let a = threaded
            .train_args(&threaded.runs[0], Path::new("/d"))
            .join(" ");
        assert!(a.contains("--threads 1"), "{a}");
        let fig5 = Plan::new(
            &ReproduceArgs {
                figure: FigureSel::Fig5,
                seeds: Some(1),
                ..args
            },
            Path::new("/r"),
        )
        .expect("plan");
        let labels: Vec<String> = fig5
            .runs
            .iter()
            .map(|r| fig5.panels[r.panel].configs[r.config].label())
            .collect();
        assert_eq!(
            labels,
            ["fixed 0.9", "LCAM 0.9/0.95", "fixed 0.9", "LCAM 0.93/0.9"]
        );
    }

    fn args_clone(a: &ReproduceArgs) -> ReproduceArgs {
        ReproduceArgs {
            preset: a.preset,
            figure: a.figure,
            seeds: a.seeds,
            backend: a.backend,
            device: a.device.clone(),
            out: a.out.clone(),
            data_dir: a.data_dir.clone(),
            report_only: a.report_only,
            jobs: a.jobs,
            threads: a.threads,
            pytorch: a.pytorch,
            lcam: a.lcam.clone(),
        }
    }

    /// The `config.json` `lcam train` would write for the run: every field the report checks.
    fn write_config(plan: &Plan, run: &RunSpec) {
        let mut v = serde_json::json!({});
        for (ptr, val) in report::expected_config(plan, run.panel, run.config, run.seed) {
            let keys: Vec<&str> = ptr.trim_start_matches('/').split('/').collect();
            let mut cur = &mut v;
            for k in &keys[..keys.len() - 1] {
                cur = cur
                    .as_object_mut()
                    .expect("object")
                    .entry(k.to_string())
                    .or_insert_with(|| serde_json::json!({}));
            }
            cur.as_object_mut()
                .expect("object")
                .insert(keys[keys.len() - 1].to_string(), val);
        }
        std::fs::create_dir_all(&run.dir).expect("mkdir");
        std::fs::write(run.dir.join("config.json"), v.to_string()).expect("config");
    }

    fn write_run(dir: &Path, epochs: u64, seed: u32, lcam: bool) {
        std::fs::create_dir_all(dir).expect("mkdir");
        let mut csv = String::from(
            "epoch,lr,train_loss,train_acc,test_loss,test_acc,below_share,seconds,img_per_s\n",
        );
        for e in 1..=epochs {
            // LCAM learns a little faster here, seeds differ a little.
            let acc = 0.1 + 0.1 * e as f64 + if lcam { 0.05 } else { 0.0 } + 0.01 * seed as f64;
            csv.push_str(&format!(
                "{e},0.1,{},{acc},1.0,{acc},0.5,1.0,100.0\n",
                2.0 / e as f64
            ));
        }
        std::fs::write(dir.join("metrics.csv"), csv).expect("write");
    }

    #[test]
    fn report_and_figures_from_finished_runs_and_refusal_of_unfinished_ones() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let args = ReproduceArgs {
            preset: Preset::Smoke,
            figure: FigureSel::Fig5,
            seeds: Some(2),
            backend: Backend::Tch,
            device: None,
            out: Some(tmp.path().join("out")),
            data_dir: None,
            report_only: true,
            jobs: 1,
            threads: None,
            pytorch: false,
            lcam: None,
        };
        let plan = Plan::new(&args, tmp.path()).expect("plan");
        for r in &plan.runs {
            let lcam = !plan.panels[r.panel].configs[r.config].is_fixed();
            write_config(&plan, r);
            write_run(&r.dir, plan.protocol.epochs, r.seed, lcam);
        }
        run(&plan, None, Path::new("")).expect("report");
        let report = std::fs::read_to_string(plan.out.join("report.md")).expect("report.md");
        // fixed 0.9 ends at 0.6 + 0.01·seed → 61.50 %; LCAM reaches that at epoch 5 (0.655).
        assert!(
            report.contains("| fixed 0.9 | 2 | 61.50 ± 6.35 |"),
            "{report}"
        );
        assert!(
            report.contains("| LCAM 0.9/0.95 | 2 | 66.50 ± 6.35 |"),
            "{report}"
        );
        assert!(!report.contains("PARTIAL"), "{report}");
        assert!(report.contains("epochs to reach 61.50 %"), "{report}");
        assert!(report.contains("| 5.0 ± 0.0 (2/2) |"), "{report}");
        assert_eq!(report.matches("](fig5.png)").count(), 1);
        for f in ["fig5.png", "fig5.svg"] {
            let len = std::fs::metadata(plan.out.join(f)).expect(f).len();
            assert!(len > 10_000, "{f} is only {len} bytes");
        }
        let png = std::fs::read(plan.out.join("fig5.png")).expect("png");
        assert_eq!(&png[1..4], b"PNG");
        // No temporary file is left behind.
        let names: Vec<String> = std::fs::read_dir(&plan.out)
            .expect("ls")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.') || n.starts_with(".tmp"))
            .collect();
        assert!(names.is_empty(), "{names:?}");

        // One run stopped after 3 epochs, one never started: a partial report of the others,
        // naming both.
        let cut = &plan.runs[1].dir;
        write_run(cut, 3, 1, true);
        let gone = &plan.runs[2].dir;
        std::fs::remove_dir_all(gone).expect("rm");
        run(&plan, None, Path::new("")).expect("partial report");
        let report = std::fs::read_to_string(plan.out.join("report.md")).expect("report.md");
        assert!(
            report.contains("**PARTIAL REPORT**: 2 of the plan's runs"),
            "{report}"
        );
        assert!(
            report.contains(&format!("{} (unfinished: 3 of 5 epochs)", cut.display())),
            "{report}"
        );
        assert!(
            report.contains(&format!("{} (no results)", gone.display())),
            "{report}"
        );
        assert!(report.contains("| LCAM 0.9/0.95 | 1 | 67.00 |"), "{report}");
        // A run trained with another configuration is refused, not averaged in.
        let odd = &plan.runs[3];
        let cfg = odd.dir.join("config.json");
        let text = std::fs::read_to_string(&cfg).expect("config");
        std::fs::write(
            &cfg,
            text.replace("\"momentum_above\":0.9", "\"momentum_above\":0.99"),
        )
        .expect("config");
        let e = format!(
            "{:#}",
            run(&plan, None, Path::new("")).expect_err("mismatch")
        );
        assert!(
            e.contains("another configuration") && e.contains("lcam.momentum_above"),
            "{e}"
        );
        assert!(e.contains(&odd.dir.display().to_string()), "{e}");
        std::fs::write(&cfg, text).expect("config");
        // Its next launch resumes it; a directory without a checkpoint is restarted (a complete
        // one is not launched at all: `finished`).
        std::fs::write(cut.join("LATEST"), "checkpoint-0003\n").expect("LATEST");
        let a = plan.train_args(&plan.runs[1], Path::new("/d"));
        assert_eq!(a.last().map(String::as_str), Some("--resume"));
        let a = plan.train_args(&plan.runs[0], Path::new("/d"));
        assert_eq!(a.last().map(String::as_str), Some("--force"));
    }
}
