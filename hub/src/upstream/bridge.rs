//! The cloud bridge pull (docs/upstream.md "Cloud bridge"): fetch what the cloud has since the
//! stored cursor (`uplink::bridge::BridgeClient`) and have the engine apply it and store the new
//! cursor in the same transaction, so a crash never skips or re-applies an event.

pub use crate::uplink::bridge::BridgeClient;

use super::record;
use crate::context::Hub;
use crate::engine::UpstreamCmd;

/// One pull: fetch since the stored cursor, and have the engine apply what came.
pub async fn pull(hub: &Hub) {
    let Some(bridge) = &hub.upstream.bridge else {
        return;
    };
    let store = hub.store.clone();
    let Ok(Ok(since)) = tokio::task::spawn_blocking(move || store.bridge_cursor()).await else {
        return;
    };
    match bridge.fetch(since).await {
        Ok((events, cursor)) if !events.is_empty() || cursor != since => {
            let n = events.len();
            if record(hub, |d| UpstreamCmd::BridgeApply {
                events,
                cursor,
                done: Some(d),
            })
            .await
            {
                tracing::info!(events = n, cursor, "applied events from the cloud bridge");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cloud bridge pull failed"),
    }
}
