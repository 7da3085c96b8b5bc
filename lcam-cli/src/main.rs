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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay(args) => replay::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
