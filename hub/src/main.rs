//! `poshub` binary: parses the command line and hands over to the library.

fn main() -> std::process::ExitCode {
    poshub::cli::main()
}
