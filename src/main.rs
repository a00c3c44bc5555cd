//! The `bundle` binary: parses arguments, dispatches to a command, and maps
//! the outcome to the documented exit code. The commands (`commands/`) turn
//! arguments into library calls; `output/` decides what is printed where.

mod cli;
mod commands;
mod output;

use std::process::ExitCode as ProcessExit;

use clap::Parser;

use bundle::{ExitCode, Result};
use cli::{Cli, Command};
use output::Printer;

fn main() -> ProcessExit {
    return_freed_memory();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return bad_arguments(e),
    };
    exit_on_signal(cli.json);
    let code = match run(&cli) {
        Ok(code) => code,
        Err(err) => {
            output::error(&err, cli.json);
            err.exit_code()
        }
    };
    ProcessExit::from(code as u8)
}

/// Has glibc's allocator give large freed blocks back to the system at
/// once. By default its threshold for serving a block by `mmap` grows up
/// to 32 MiB after the first large free, so the buffers of a big manifest
/// (tens of MB, read, parsed and dropped) are then carved from its heaps
/// and stay mapped after they are freed: a restore's safety snapshot of
/// 50,000 files peaked at 107-111 MiB, 71-73 MiB with these settings
/// (docs/performance.md). Two arenas, not one per core and thread, for the same
/// reason.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_freed_memory() {
    const THRESHOLD: libc::c_int = 128 * 1024;
    // SAFETY: mallopt only sets the allocator's parameters (each call is
    // independent; one that fails leaves the default), and no other thread
    // runs yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, THRESHOLD);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Other allocators are left as they are.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_freed_memory() {}

/// A command line clap refuses: its own message (help and version are not
/// failures); with `--json` anywhere in it, also the usage error document.
fn bad_arguments(e: clap::Error) -> ProcessExit {
    use clap::error::ErrorKind;
    let failure = !matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion);
    if failure && std::env::args_os().any(|a| a == "--json") {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or("invalid arguments");
        output::usage_json(first.trim_start_matches("error: "));
    }
    let _ = e.print();
    ProcessExit::from(if failure { ExitCode::Usage as u8 } else { 0 })
}

/// On SIGINT or SIGTERM: remove what this process was building, say in one
/// line what was left as it was, and exit 130 or 143 (128 + the signal).
fn exit_on_signal(json: bool) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            // Held until the exit: the other threads print nothing more.
            let _out = std::io::stdout().lock();
            let _err = std::io::stderr().lock();
            let said = bundle::interrupt::clean_up();
            let name = if signal == SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            };
            output::interrupted(name, 128 + signal, &said, json);
            std::process::exit(128 + signal);
        }
    });
}

fn run(cli: &Cli) -> Result<ExitCode> {
    let printer = Printer::new(cli.json, cli.quiet, cli.no_progress);
    match &cli.command {
        Command::Create(args) => commands::create::run(cli, args, printer),
        Command::Verify(args) => commands::verify::run(cli, args, printer),
        Command::List(args) => commands::list::run(cli, args, printer),
        Command::Restore(args) => commands::restore::run(cli, args, printer),
        Command::Drill(args) => commands::drill::run(cli, args, printer),
        Command::Prune(args) => commands::prune::run(cli, args, printer),
        Command::Push(args) => commands::remote::push(cli, args, printer),
        Command::Pull(args) => commands::remote::pull(cli, args, printer),
        Command::Schedule(cmd) => commands::schedule::run(cli, cmd, printer),
        Command::Key(cmd) => commands::key::run(cli, cmd, printer),
        Command::Completions(args) => commands::docs::completions(args.shell),
        Command::Man => commands::docs::man(),
    }
}
