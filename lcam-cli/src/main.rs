//! `lcam`: the command-line front end of the LCAM workspace.

mod replay;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// LCAM (Loss-Controlled Asymmetric Momentum) tools.
#[derive(Debug, Parser)]
#[command(name = "lcam", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay an `lcam-trace/1` file and print (or write) its `lcam-trajectory/1`.
    Replay(replay::ReplayArgs),
    /// Train a Wide ResNet on CIFAR-10/100 with LCAM or SGD.
    Train(lcam_cli::train::args::TrainArgs),
}

/// A clap error as one line: its message and hints (`[possible values: …]`, `tip: …`), without
/// the usage block.
fn one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more"))
        .collect();
    parts.join(" ")
}

fn main() -> ExitCode {
    // A bug must still reach the user as one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "error: internal error: {}{at} (a bug: please report it)",
            message.replace('\n', " ")
        );
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version (exit 0), and the help for a bare `lcam` (exit 2): as clap does.
        Err(e)
            if !e.use_stderr()
                || e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            e.exit()
        }
        Err(e) => {
            let line = one_line(&e);
            eprintln!("{line}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Replay(args) => replay::run(&args),
        Command::Train(args) => lcam_cli::train::command(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
