//! Network side of the hub: HTTP routes and WebSocket upgrade, terminal connections, per-terminal
//! outgoing queues, and catch-up replay.

pub mod api;
pub mod catchup;
pub mod conn;
pub mod http;
pub mod kitchen;
pub mod outbox;
