//! poshub-supervisor: keeps the hub alive, checks state after power loss, installs signed A/B
//! updates and commits them only after a healthy trial. `main.rs` only parses the CLI; every
//! concern lives in its own module so tests drive the real code in-process or as a process.

pub mod api;
pub mod backup;
pub mod bundle;
pub mod cli;
pub mod config;
pub mod config_check;
pub mod dbcheck;
pub mod download;
pub mod fsutil;
pub mod http;
pub mod hub;
pub mod install;
pub mod lifecycle;
pub mod logging;
pub mod notify;
pub mod recovery;
pub mod run;
pub mod slots;
pub mod status;
pub mod types;
