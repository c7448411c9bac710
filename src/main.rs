//! The `rulebook` command; everything lives in the library (`rulebook::cli`).

// The evaluator allocates many small values (findings, evidence); mimalloc handles that
// pattern markedly better than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    rulebook::cli::main()
}
