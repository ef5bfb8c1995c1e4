//! Network side of the hub: HTTP routes and WebSocket upgrade, terminal connections and
//! catch-up replay. The per-terminal outgoing queues are the engine's (`engine::outbox`).

pub mod api;
pub mod catchup;
pub mod conn;
pub mod http;
pub mod kitchen;
mod tally;
pub mod upstream_admin;
mod writer;
pub mod ws_write;
