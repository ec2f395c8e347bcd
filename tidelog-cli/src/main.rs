//! The `tidelog` command: `bench` (the substrates against a raw
//! pwrite+fdatasync floor on your disk) and, for operators, `verify`,
//! `inspect`, `dump`, `repair` and `backup`.

mod bench;
mod child;
mod ops;
mod streams;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "tidelog", version, about = "tidelog: an async-first durable journal for tokio")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Measure durable appends per substrate beside a raw pwrite+fdatasync loop.
    Bench(Box<bench::BenchArgs>),
    /// Check every frame of a journal and the stream index: exit 0 clean, 1 torn tail only, 2 corruption.
    Verify {
        /// The journal directory.
        dir: PathBuf,
    },
    /// Show segments, LSN ranges, record counts, sizes, the lock holder and streams (read-only).
    Inspect {
        /// The journal directory.
        dir: PathBuf,
    },
    /// Print records: start LSN, record LSN, length, payload; or one stream's entries (read-only).
    Dump(ops::DumpArgs),
    /// Cut a torn tail as recovery would, keeping a sidecar copy; --dry-run only reports.
    Repair(ops::RepairArgs),
    /// Copy a journal (live or not) up to its durable frontier into a new directory, synced.
    Backup {
        /// The journal directory.
        src: PathBuf,
        /// The backup's directory: must not exist.
        dest: PathBuf,
    },
    /// Crash-test child: append durable records, print each acknowledgement, until killed.
    #[command(hide = true)]
    AppendUntilKilled(child::ChildArgs),
    /// Benchmark child: follow a journal, print each record's LSN and arrival time.
    #[command(hide = true)]
    FollowTiming {
        /// The journal directory.
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Bench(args) => match bench::run(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tidelog bench: {e}");
                ExitCode::from(2)
            }
        },
        Command::Verify { dir } => verify(&dir),
        Command::Inspect { dir } => ops::inspect(&dir),
        Command::Dump(args) => ops::dump(args),
        Command::Repair(args) => ops::repair(args),
        Command::FollowTiming { dir } => match bench::follow::follow_timing(&dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tidelog follow-timing: {e}");
                ExitCode::from(2)
            }
        },
        Command::Backup { src, dest } => ops::backup(&src, &dest),
        Command::AppendUntilKilled(args) => match child::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tidelog append-until-killed: {e}");
                ExitCode::from(2)
            }
        },
    }
}

fn verify(dir: &std::path::Path) -> ExitCode {
    match tidelog::verify(dir) {
        Ok(report) => {
            println!(
                "{}: {} segments, {} records, end LSN {}",
                dir.display(),
                report.segments,
                report.records,
                report.end_lsn
            );
            for problem in &report.corruption {
                println!("corrupt: {problem}");
            }
            let index_consistent = streams::verify(dir, !report.corruption.is_empty());
            if !report.corruption.is_empty() || !index_consistent {
                ExitCode::from(2)
            } else if report.torn_tail_bytes > 0 {
                println!("torn tail: {} bytes after LSN {}", report.torn_tail_bytes, report.end_lsn);
                ExitCode::from(1)
            } else {
                println!("clean");
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("tidelog verify: {e}");
            ExitCode::from(2)
        }
    }
}
