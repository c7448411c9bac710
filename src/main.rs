//! The `rulebook` command; everything lives in the library (`rulebook::cli`).

fn main() -> std::process::ExitCode {
    rulebook::cli::main()
}
