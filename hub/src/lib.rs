//! poshub: the LAN sync hub for POS terminals. Terminals connect over plain WebSocket; the hub
//! leases orders to one writer at a time, stores every change durably in redb, broadcasts it to
//! the other terminals and lets reconnecting terminals catch up without gaps or duplicates.

pub mod auth;
pub mod backups;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod config_check;
pub mod context;
pub mod demo;
pub mod engine;
pub mod fsutil;
pub mod logging;
pub mod mdns;
pub mod metrics;
pub mod net;
pub mod ops;
pub mod pages;
pub mod print;
pub mod printer;
pub mod protocol;
pub mod server;
pub mod station;
pub mod store;
pub mod uplink;
pub mod upstream;

/// The hub's version, reported in `AUTH_OK`, `/health` and mDNS.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
