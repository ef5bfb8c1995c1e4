//! The terminal wire protocol (SPEC §2): JSON text frames in, JSON text frames out.

pub mod inbound;
pub mod kitchen;
pub mod outbound;

pub use inbound::{parse, Inbound, Parsed, ProtoError, TableId};
