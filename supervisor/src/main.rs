//! `poshub-supervisor`: parses the command line and hands over to the library.

use clap::Parser;

fn main() {
    let cli = poshub_supervisor::cli::Cli::parse();
    poshub_supervisor::logging::init(cli.config.as_deref());
    if let Err(e) = poshub_supervisor::cli::dispatch(cli) {
        eprintln!("poshub-supervisor: {e:#}");
        std::process::exit(1);
    }
}
