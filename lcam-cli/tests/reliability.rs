//! Crash safety of `lcam train` (issue 9): a run killed with SIGKILL at seeded points — mid-epoch,
//! at every stage of a checkpoint write, at a random time — and resumed each time ends with the
//! parameters, optimizer state and metrics of an uninterrupted run, bit for bit; a damaged
//! checkpoint is detected and the previous one used, or the error says there is none.
//!
//! The stages of a checkpoint write are reached through the `LCAM_TEST_FAILPOINT` hook of
//! `lcam_cli::train::checkpoint` (the process stops there and is killed with SIGKILL by the test).

#![cfg(any(feature = "tch", feature = "burn"))]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;

use common::stderr;
use lcam_cli::data::cifar::CifarKind;

const EPOCHS: &str = "3";

/// 200 training images (13 steps of 16 per epoch), 20 test images.
fn data() -> tempfile::TempDir {
    common::data(CifarKind::Cifar10, 40)
}

fn command(backend: &str, data: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = common::lcam_command();
    c.args(common::train_args(backend, data, out))
        .args([
            "--threads",
            "1",
            "--seed",
            "7",
            "--schedule",
            "exp:0.99@2",
            "--epochs",
            EPOCHS,
        ])
        .args(extra);
    c
}

fn run(backend: &str, data: &Path, out: &Path, extra: &[&str]) -> Output {
    command(backend, data, out, extra)
        .output()
        .expect("run lcam")
}

/// splitmix64: the seeded source of the kill points.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Where one process of the run is killed.
#[derive(Debug, Clone)]
enum Kill {
    /// At the `n`-th pass of a failpoint (see `LCAM_TEST_FAILPOINT` in `train::checkpoint`).
    At(&'static str, u64),
    /// After this long, wherever the process is.
    After(Duration),
    /// As soon as a `checkpoint-*.partial` directory is seen (the directory is polled).
    WhenPartial,
}

/// The failpoints of a checkpoint write, in order.
const CHECKPOINT_POINTS: [&str; 5] = [
    "checkpoint-partial",
    "checkpoint-files",
    "checkpoint-renamed",
    "latest-temp",
    "checkpoint-committed",
];

/// What happened to one process.
#[derive(Debug)]
enum Outcome {
    Killed(String),
    Exited(Output),
}

fn has_partial(out: &Path) -> bool {
    std::fs::read_dir(out)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("checkpoint-") && n.ends_with(".partial")
        })
}

fn kill(mut child: Child, why: String) -> Outcome {
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    Outcome::Killed(why)
}

/// Starts `lcam train` (with `--resume` when the run directory has a configuration) and kills
/// it as `how` says, unless it exits first.
fn run_once(backend: &str, data: &Path, out: &Path, how: &Kill) -> Outcome {
    let resume = out.join("config.json").exists();
    let mut cmd = command(
        backend,
        data,
        out,
        &[if resume { "--resume" } else { "--force" }],
    );
    match how {
        Kill::At(point, n) => cmd.env("LCAM_TEST_FAILPOINT", format!("{point}:{n}")),
        // The backstop: never past a checkpoint's rename.
        Kill::After(_) | Kill::WhenPartial => {
            cmd.env("LCAM_TEST_FAILPOINT", "checkpoint-renamed:1")
        }
    };
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lcam");
    let pipe = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if line.starts_with("failpoint ") {
                let _ = tx.send(line.clone());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let start = Instant::now();
    let deadline = Duration::from_secs(300);
    let killed = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            let stderr = reader.join().expect("reader");
            return Outcome::Exited(Output {
                status,
                stdout: vec![],
                stderr: stderr.into_bytes(),
            });
        }
        assert!(start.elapsed() < deadline, "lcam hangs ({how:?})");
        if let Ok(line) = rx.try_recv() {
            break kill(child, line);
        }
        match how {
            Kill::At(..) => {
                if let Ok(line) = rx.recv_timeout(Duration::from_millis(20)) {
                    break kill(child, line);
                }
            }
            Kill::After(d) => {
                if start.elapsed() >= *d {
                    break kill(child, format!("after {d:?}"));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Kill::WhenPartial => {
                if has_partial(out) {
                    break kill(child, "a .partial directory appeared".into());
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    };
    let _ = reader.join();
    killed
}

/// The seeded kill plan, in three rounds, one per epoch: nine kills that cannot let the run
/// advance (each checkpoint stage before the commit, two mid-epoch steps, two random times, one
/// on sight of a `.partial` directory; shuffled, three per round), the first two rounds closed
/// by a kill right after a checkpoint is committed. The timed and `.partial` kills carry the
/// `checkpoint-renamed` failpoint as a backstop, so whatever the machine's speed, no process
/// but the round-closing ones commits a checkpoint: the run cannot finish before the plan is
/// through, and every planned point is reached.
fn plan(seed: u64, steps_per_epoch: u64, epoch_time: Duration) -> Vec<Kill> {
    let mut rng = Rng(seed);
    let mut kills: Vec<Kill> = CHECKPOINT_POINTS[..4]
        .iter()
        .map(|p| Kill::At(p, 1))
        .collect();
    for _ in 0..2 {
        kills.push(Kill::At("step", 1 + rng.below(steps_per_epoch - 1)));
    }
    for _ in 0..2 {
        let ms = (epoch_time.as_millis() as u64).max(1);
        kills.push(Kill::After(Duration::from_millis(50 + rng.below(ms))));
    }
    kills.push(Kill::WhenPartial);
    for i in (1..kills.len()).rev() {
        kills.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut plan = Vec::new();
    for (i, k) in kills.into_iter().enumerate() {
        plan.push(k);
        if i == 2 || i == 5 {
            plan.push(Kill::At(CHECKPOINT_POINTS[4], 1));
        }
    }
    plan
}

/// The files of a checkpoint that hold state (everything but `progress.json`, whose metric
/// rows carry timings), with their bytes.
fn state_files(checkpoint: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(checkpoint)
        .expect("checkpoint")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "progress.json")
        .map(|n| {
            let bytes = std::fs::read(checkpoint.join(&n)).expect("read");
            (n, bytes)
        })
        .collect();
    files.sort();
    files
}

fn latest(out: &Path) -> PathBuf {
    let name = std::fs::read_to_string(out.join("LATEST")).expect("LATEST");
    out.join(name.trim())
}

/// metrics.csv without the timing columns `seconds` and `img_per_s`.
fn metrics(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out.join("metrics.csv"))
        .expect("metrics.csv")
        .lines()
        .map(|l| l.split(',').take(7).collect::<Vec<_>>().join(","))
        .collect()
}

fn listing(out: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(out)
        .expect("list")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("list").flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).expect("copy");
        }
    }
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes[at] ^= 0x40;
    std::fs::write(path, bytes).expect("write");
}

/// The kill-and-resume proof for one backend, then the damaged-checkpoint cases on a copy of
/// its finished run directory.
fn kill_and_resume(backend: &str, seed: u64) {
    let t0 = Instant::now();
    let d = data();
    let reference = tempfile::tempdir().expect("out");
    let o = run(backend, d.path(), reference.path(), &["--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The shortest epoch of the reference (training + evaluation), from its `seconds` column.
    let csv = std::fs::read_to_string(reference.path().join("metrics.csv")).expect("metrics");
    let epoch_time = csv
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(7)?.parse::<f64>().ok())
        .map(Duration::from_secs_f64)
        .min()
        .expect("epoch seconds");
    let want_state = state_files(&latest(reference.path()));
    assert_eq!(want_state.len(), 2, "model and optimizer files");
    let want_metrics = metrics(reference.path());
    assert_eq!(want_metrics.len(), 4, "{want_metrics:?}");

    let out = tempfile::tempdir().expect("out");
    let crashed = out.path().join("run");
    let mut reached = Vec::new();
    let mut processes = 0;
    for how in plan(seed, 13, epoch_time) {
        processes += 1;
        match run_once(backend, d.path(), &crashed, &how) {
            Outcome::Killed(why) => {
                // metrics.csv never runs ahead of the committed checkpoint.
                let committed = std::fs::read_to_string(crashed.join("LATEST"))
                    .ok()
                    .and_then(|n| n.trim().strip_prefix("checkpoint-")?.parse::<usize>().ok())
                    .unwrap_or(0);
                let rows = std::fs::read_to_string(crashed.join("metrics.csv"))
                    .map_or(0, |m| m.lines().count().saturating_sub(1));
                assert!(
                    rows <= committed,
                    "{why}: {rows} metric rows, {committed} committed"
                );
                reached.push(why);
            }
            Outcome::Exited(o) => panic!(
                "{how:?}: the process ended before it was killed: {}",
                stderr(&o)
            ),
        }
    }
    // Every checkpoint stage and both mid-epoch steps were reached and killed there.
    for point in CHECKPOINT_POINTS {
        assert!(
            reached
                .iter()
                .any(|r| r == &format!("failpoint {point} reached")),
            "{point} never reached: {reached:?}"
        );
    }
    assert!(
        reached
            .iter()
            .filter(|r| *r == "failpoint step reached")
            .count()
            == 2,
        "{reached:?}"
    );
    // The killed run is unfinished: a start without --resume or --force is refused, and
    // changes nothing.
    let before = listing(&crashed);
    let o = run(backend, d.path(), &crashed, &[]);
    assert!(
        !o.status.success()
            && stderr(&o).contains("already holds an unfinished run (use --resume to continue it)"),
        "{}",
        stderr(&o)
    );
    assert_eq!(listing(&crashed), before);
    let o = run(backend, d.path(), &crashed, &["--resume"]);
    assert!(o.status.success(), "{}", stderr(&o));
    processes += 1;
    assert_eq!(
        state_files(&latest(&crashed)),
        want_state,
        "{backend}: the killed and resumed run's model/optimizer differ from the uninterrupted run"
    );
    assert_eq!(metrics(&crashed), want_metrics, "{backend}: metrics differ");
    assert_eq!(
        listing(&crashed),
        [
            "LATEST",
            "checkpoint-0002",
            "checkpoint-0003",
            "config.json",
            "metrics.csv"
        ],
        "debris left after {reached:?}"
    );
    eprintln!(
        "{backend}: {processes} processes, kills {reached:?}, {:.1}s so far",
        t0.elapsed().as_secs_f64()
    );

    // A corrupt newest checkpoint: the previous one is used (with a warning), the lost epoch is
    // trained again, and the result is the uninterrupted run's.
    let torn = out.path().join("torn");
    copy_dir(&crashed, &torn);
    let model = want_state[0].0.clone();
    flip_byte(&torn.join("checkpoint-0003").join(&model), 1000);
    let o = run(backend, d.path(), &torn, &["--resume"]);
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(
        e.contains("warning:")
            && e.contains("fails its checksum")
            && e.contains("using the previous checkpoint")
            && e.contains("checkpoint-0002")
            && e.contains("resuming")
            && e.contains("after epoch 2"),
        "{e}"
    );
    assert_eq!(
        state_files(&latest(&torn)),
        want_state,
        "{backend}: fallback"
    );
    assert_eq!(metrics(&torn), want_metrics);

    // A truncated file is named as such.
    let file = torn.join("checkpoint-0003").join(&model);
    let bytes = std::fs::read(&file).expect("read");
    std::fs::write(&file, &bytes[..bytes.len() / 2]).expect("write");
    // ... and with no intact checkpoint left, the error says so, in one line, exit ≠ 0.
    flip_byte(&torn.join("checkpoint-0002").join(&want_state[1].0), 10);
    let o = run(backend, d.path(), &torn, &["--resume"]);
    let e = stderr(&o);
    assert!(!o.status.success(), "{e}");
    let errors: Vec<&str> = e.lines().filter(|l| l.contains("error")).collect();
    assert!(
        errors.len() == 1
            && errors[0].starts_with("error: ")
            && errors[0].contains("no intact checkpoint")
            && errors[0].contains("truncated"),
        "{e}"
    );

    // LATEST naming a checkpoint that is not there (or garbage): the newest intact one is used.
    let gone = out.path().join("gone");
    copy_dir(&crashed, &gone);
    std::fs::remove_dir_all(gone.join("checkpoint-0003")).expect("rm");
    std::fs::create_dir(gone.join("checkpoint-0003.partial")).expect("debris");
    std::fs::write(gone.join(".tmpXYZ"), "half a LATEST").expect("debris");
    let o = run(backend, d.path(), &gone, &["--resume"]);
    let e = stderr(&o);
    assert!(o.status.success() && e.contains("is missing"), "{e}");
    assert_eq!(state_files(&latest(&gone)), want_state);
    assert_eq!(
        listing(&gone),
        [
            "LATEST",
            "checkpoint-0002",
            "checkpoint-0003",
            "config.json",
            "metrics.csv"
        ],
        "leftovers of a killed run are removed on resume"
    );
    std::fs::write(gone.join("LATEST"), "../../etc").expect("write");
    let o = run(backend, d.path(), &gone, &["--resume"]);
    let e = stderr(&o);
    assert!(
        o.status.success() && e.contains("not a checkpoint") && e.contains("checkpoint-0003"),
        "{e}"
    );
    eprintln!("{backend}: {:.1}s in all", t0.elapsed().as_secs_f64());
}

#[cfg(feature = "tch")]
#[test]
fn tch_killed_and_resumed_run_is_bit_identical_and_torn_checkpoints_fall_back() {
    kill_and_resume("tch", 0x7c4);
}

#[cfg(feature = "burn")]
#[test]
fn burn_killed_and_resumed_run_is_bit_identical_and_torn_checkpoints_fall_back() {
    kill_and_resume("burn", 0xb0e);
}
