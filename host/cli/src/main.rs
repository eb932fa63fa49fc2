//! `arbiter`: thin commands over the arbiter crates.

mod audit_args;
mod clock_args;
mod commands;
mod engine_args;
mod state_args;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "arbiter", version, about = "Guardrail policy engine for AI agents")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    New(commands::new::Args),
    Build(commands::build::Args),
    Inspect(commands::inspect::Args),
    Eval(commands::eval::Args),
    Test(commands::test::Args),
    Pin(commands::pin::Args),
    ToolPins(commands::tool_pins::Args),
    Replay(commands::replay::Args),
    Report(commands::report::Args),
    Serve(Box<commands::serve::Args>),
    Audit(commands::audit::Args),
    Credential(commands::credential::Args),
    Keygen(commands::signing::KeygenArgs),
    Sign(commands::signing::SignArgs),
    Verify(commands::signing::VerifyArgs),
    Deploy(commands::deploy::DeployArgs),
    Rollback(commands::deploy::RollbackArgs),
    Halt(commands::halt::HaltArgs),
    Resume(commands::halt::ResumeArgs),
    Lint(commands::lint::Args),
    Readiness(commands::readiness::Args),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("ARBITER_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::New(args) => commands::new::run(args),
        Command::Build(args) => commands::build::run(args),
        Command::Inspect(args) => commands::inspect::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Test(args) => commands::test::run(args),
        Command::Pin(args) => commands::pin::run(args),
        Command::ToolPins(args) => commands::tool_pins::run(args),
        Command::Replay(args) => commands::replay::run(args),
        Command::Report(args) => commands::report::run(args),
        Command::Serve(args) => commands::serve::run(*args),
        Command::Audit(args) => commands::audit::run(args),
        Command::Credential(args) => commands::credential::run(args),
        Command::Keygen(args) => commands::signing::keygen(args),
        Command::Sign(args) => commands::signing::sign(args),
        Command::Verify(args) => commands::signing::verify(args),
        Command::Deploy(args) => commands::deploy::deploy(args),
        Command::Rollback(args) => commands::deploy::rollback(args),
        Command::Halt(args) => commands::halt::halt(args),
        Command::Resume(args) => commands::halt::resume(args),
        Command::Lint(args) => commands::lint::run(args),
        Command::Readiness(args) => commands::readiness::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
