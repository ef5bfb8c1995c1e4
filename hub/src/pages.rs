//! The two self-contained pages served by the hub: the monitoring dashboard and the browser
//! terminal. No external assets, so both work on a LAN with no internet.

/// `GET /` and `/dashboard`.
pub const DASHBOARD: &str = include_str!("../assets/dashboard.html");
/// `GET /terminal`.
pub const TERMINAL: &str = include_str!("../assets/terminal.html");
