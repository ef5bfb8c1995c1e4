//! poshub-supervisor: keeps the hub alive, checks state after power loss, installs signed A/B
//! updates and commits them only after a healthy trial. `main.rs` only parses the CLI; every
//! concern lives in its own module so tests drive the real code in-process or as a process.
//!
//! The modules depend on each other one way, from the top of this list down (a module uses only
//! modules of its own line, without a cycle, or of the lines below it):
//!
//! 1. entry points: [`cli`], [`run`], [`api`], and [`status`] (the views both print or serve);
//! 2. what the service does: [`install`], [`hub`] (the hub process), [`lifecycle`] (slot
//!    decisions), [`recovery`], [`backup`];
//! 3. the pieces they use: [`bundle`], [`slots`] (bootloader backends and the slot store),
//!    [`download`], [`config_check`];
//! 4. below everything: [`config`], [`types`] (shared plain types), [`fsutil`], [`dbcheck`],
//!    [`http`], [`notify`], [`logging`].

// 1. Entry points.
pub mod api;
pub mod cli;
pub mod run;
pub mod status;
// 2. What the service does.
pub mod backup;
pub mod hub;
pub mod install;
pub mod lifecycle;
pub mod recovery;
// 3. The pieces they use.
pub mod bundle;
pub mod config_check;
pub mod download;
pub mod slots;
// 4. Below everything.
pub mod config;
pub mod dbcheck;
pub mod fsutil;
pub mod http;
pub mod logging;
pub mod notify;
pub mod types;
