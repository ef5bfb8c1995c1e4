//! DNS-SD advertisement (SPEC §5): `_poshub._tcp` on the WebSocket port, instance name
//! `POS Hub - <host> (<storeId>/<tenantId>)`, TXT `tenantId`, `storeId`, `version`, `httpPort`.
//! A box that boots before its network is up gets ENODEV from the responder; it retries in the
//! background until multicast works, and never stops the hub for it.

use std::time::Duration;

use crate::config::Config;

/// The DNS-SD service type terminals browse for.
pub const SERVICE_TYPE: &str = "_poshub._tcp";

/// The instance name, e.g. `POS Hub - pos-pi (store-001/demo)`.
pub fn instance_name(cfg: &Config) -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "poshub".into());
    format!("POS Hub - {host} ({}/{})", cfg.store_id, cfg.tenant_id)
}

/// TXT records of the advertisement.
pub fn txt_records(cfg: &Config, http_port: u16) -> Vec<String> {
    vec![
        format!("tenantId={}", cfg.tenant_id),
        format!("storeId={}", cfg.store_id),
        format!("version={}", crate::VERSION),
        format!("httpPort={http_port}"),
    ]
}

/// Starts advertising in the background; the returned task owns the responder for the life of
/// the hub (dropping it withdraws the service).
pub fn spawn(cfg: &Config, ws_port: u16, http_port: u16) -> tokio::task::JoinHandle<()> {
    let name = instance_name(cfg);
    let txt = txt_records(cfg, http_port);
    tokio::spawn(async move {
        let mut delay = Duration::from_secs(2);
        let responder = loop {
            match libmdns::Responder::spawn(&tokio::runtime::Handle::current()) {
                Ok(r) => break r,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_s = delay.as_secs(), "mDNS responder not available yet");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(60));
                }
            }
        };
        let txt_refs: Vec<&str> = txt.iter().map(String::as_str).collect();
        let _service = responder.register(SERVICE_TYPE, &name, ws_port, &txt_refs);
        tracing::info!(name = %name, port = ws_port, "advertising {SERVICE_TYPE} over mDNS");
        std::future::pending::<()>().await;
    })
}
