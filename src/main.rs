//! The `rulebook` command: arguments (clap), progress bars (indicatif) and exit codes; the
//! work is done by the `rulebook` library.

mod cli;

// The evaluator allocates many small values (findings, evidence); mimalloc handles that
// pattern markedly better than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
