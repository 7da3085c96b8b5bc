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
    Train(lcam_cli::train::run::TrainArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
