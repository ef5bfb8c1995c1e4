//! Plain data types shared by several layers, kept here so that the modules that produce them
//! and the modules that read them do not import each other: the slot names (the config names a
//! device per slot, the slot backends act on them), the hub's watched state (the watchdog in
//! `hub` publishes it; backups, the API and the trial monitor read it) and a reboot request (the
//! API and the trial monitor send it; `run` acts on it). No logic beyond formatting.

use std::fmt;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// One of the two root-filesystem slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    /// The slot that is not `self`.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
    /// "A" or "B".
    pub fn name(self) -> &'static str {
        match self {
            Slot::A => "A",
            Slot::B => "B",
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Slot {
    type Err = String;
    fn from_str(s: &str) -> Result<Slot, String> {
        match s.trim() {
            "A" | "a" => Ok(Slot::A),
            "B" | "b" => Ok(Slot::B),
            other => Err(format!("{other:?} is not a slot (A or B)")),
        }
    }
}

/// What the supervisor knows about the hub right now.
#[derive(Debug, Clone, Default)]
pub struct HubState {
    pub pid: Option<u32>,
    pub healthy: bool,
    /// Start of the current unbroken run of passing health checks.
    pub healthy_since: Option<Instant>,
    /// Hub exits so far (each one is followed by a restart).
    pub restarts: u32,
    pub last_exit: Option<String>,
    pub last_error: Option<String>,
}

/// Why the supervisor is going down to reboot.
#[derive(Debug, Clone)]
pub struct RebootRequest {
    /// Ask the bootloader for the one-shot trial boot.
    pub trial: bool,
    pub reason: String,
}
