//! `poshub-supervisor`: placeholder until the supervisor lands (issue 5).

fn main() {
    eprintln!("poshub-supervisor: not built yet");
    std::process::exit(2);
}
