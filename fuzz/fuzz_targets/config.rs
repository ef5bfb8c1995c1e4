//! The env files and settings of both programs: the fuzzed text is written as an env file and
//! read the way `poshub` and `poshub-supervisor` read theirs (env-file parser, then settings
//! and `check-config`). Any text must give settings or a clear error, never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn dir() -> &'static std::path::Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("tempdir").keep())
}

fuzz_target!(|data: &[u8]| {
    let path = dir().join("fuzz.env");
    std::fs::write(&path, data).expect("write the env file");
    // The hub.
    let empty: [(&str, &str); 0] = [];
    if let Ok(vars) = poshub::config::Vars::from_map(empty).with_env_file(&path) {
        let _ = poshub::config::Config::from_vars(&vars, false);
        let _ = poshub::config_check::check(&vars);
    }
    // The supervisor.
    let _ = poshub_supervisor::config::parse_env_file(&path);
    if let Ok(src) = poshub_supervisor::config::Source::load(Some(&path)) {
        let _ = poshub_supervisor::config::Config::from_source(&src);
    }
    let _ = poshub_supervisor::config_check::check(Some(&path));
});
