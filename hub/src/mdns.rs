//! DNS-SD advertisement (docs/configuration.md "`HUB_MDNS_ENABLED`"): `_poshub._tcp` on the WebSocket
//! port, instance name `POS Hub - <host> (<storeId>/<tenantId>)`, TXT `tenantId`, `storeId`,
//! `version`, `httpPort`. A box that boots before its network is up gets ENODEV from the responder;
//! it retries in the background until multicast works, and never stops the hub for it.

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

/// The responder and its registered service. libmdns panics ("responder died") when either is
/// dropped after the responder's tasks are gone, which is what happened when the runtime tore
/// everything down at exit in whatever order (librespot-org/libmdns#49): a panic in a
/// destructor, then an abort, on one stop in three. So the advertisement is withdrawn
/// explicitly while the runtime still runs (service first, then the responder), and a late drop
/// cannot unwind out of here.
struct Advert {
    service: Option<libmdns::Service>,
    responder: Option<libmdns::Responder>,
}

impl Drop for Advert {
    fn drop(&mut self) {
        let (service, responder) = (self.service.take(), self.responder.take());
        let withdrawn = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            drop(service); // goodbye packet (TTL 0)
            drop(responder); // stops the responder's tasks
        }));
        if withdrawn.is_err() {
            tracing::warn!("mDNS responder was already gone at shutdown");
        }
    }
}

/// Starts advertising in the background until `shutdown` turns true; the returned task owns
/// the responder and ends once the advertisement is withdrawn (await it before the runtime
/// stops).
pub fn spawn(
    cfg: &Config,
    ws_port: u16,
    http_port: u16,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let name = instance_name(cfg);
    let txt = txt_records(cfg, http_port);
    tokio::spawn(async move {
        let mut delay = Duration::from_secs(2);
        let responder = loop {
            match libmdns::Responder::spawn(&tokio::runtime::Handle::current()) {
                Ok(r) => break r,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_s = delay.as_secs(), "mDNS responder not available yet");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = shutdown.wait_for(|stop| *stop) => return,
                    }
                    delay = (delay * 2).min(Duration::from_secs(60));
                }
            }
        };
        let txt_refs: Vec<&str> = txt.iter().map(String::as_str).collect();
        let service = responder.register(SERVICE_TYPE, &name, ws_port, &txt_refs);
        let advert = Advert {
            service: Some(service),
            responder: Some(responder),
        };
        tracing::info!(name = %name, port = ws_port, "advertising {SERVICE_TYPE} over mDNS");
        let _ = shutdown.wait_for(|stop| *stop).await;
        drop(advert);
        tracing::debug!("mDNS advertisement withdrawn");
    })
}
