//! One terminal's WebSocket: a reader (auth, validation, rate limit, requests to the engine)
//! and a writer (`writer.rs`: the outbox drained to the socket, catch-up replay). Both
//! run in one task; when either ends, the other is dropped and the engine is told.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::protocol::Role as WsRole;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::writer::write_loop;
use super::ws_write::{FrameWriter, ReadSide};
use crate::auth::Role;
use crate::config::AuthMode;
use crate::context::Hub;
use crate::engine::outbox::{Frame, Outbox, Utf8Bytes, MAX_QUEUED_OTHER};
use crate::engine::{now_ms, Cmd, Session};
use crate::protocol::inbound::{AuthMsg, MAX_ID_LEN};
use crate::protocol::{outbound, parse, Inbound, ProtoError};

/// Requests of one terminal that may wait in the engine at once.
const MAX_IN_FLIGHT: usize = 256;

/// Serves one upgraded WebSocket until it closes: tungstenite reads and validates what the
/// terminal sends; a [`FrameWriter`] writes everything the terminal receives.
pub async fn serve<S>(hub: Arc<Hub>, io: S, peer: String)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let live = hub.sockets.enter();
    let conn_id = hub.next_conn.fetch_add(1, Ordering::Relaxed);
    let (rd, wr) = tokio::io::split(io);
    let (outbox, rx) = Outbox::new(conn_id);
    let stream = WebSocketStream::from_raw_socket(
        ReadSide::new(rd, outbox.clone()),
        WsRole::Server,
        Some(super::http::ws_config()),
    )
    .await;
    let mut session: Option<Arc<Session>> = None;
    tracing::debug!(conn_id, %peer, "websocket connected");
    tokio::select! {
        () = read_loop(&hub, conn_id, stream, &outbox, &mut session) => {}
        () = write_loop(&hub, conn_id, FrameWriter::new(wr), &outbox, rx) => {}
    }
    if let Some(s) = session {
        tracing::info!(conn_id, terminal = %s.terminal_id, "terminal disconnected");
        hub.engine.send(Cmd::Disconnected { conn_id });
    }
    // The hub (and with it the database) is let go before the socket counts as closed.
    drop(hub);
    drop(live);
}

/// Token bucket: `rate` messages per second with a one-second burst.
struct RateLimit {
    rate: f64,
    tokens: f64,
    last: Instant,
    dropped_in_window: u32,
    window_start: Instant,
}

impl RateLimit {
    fn new(rate: u32) -> Self {
        let now = Instant::now();
        RateLimit {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            last: now,
            dropped_in_window: 0,
            window_start: now,
        }
    }

    /// Ok(true) to accept, Ok(false) to refuse with `rate_limited`, Err(()) to close (1008).
    fn check(&mut self) -> Result<bool, ()> {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.rate);
        self.last = now;
        if now.duration_since(self.window_start) > Duration::from_secs(10) {
            self.window_start = now;
            self.dropped_in_window = 0;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(true);
        }
        self.dropped_in_window += 1;
        // Past a full second's worth of refused messages within ten seconds, it is a flood.
        if f64::from(self.dropped_in_window) > self.rate.max(20.0) {
            return Err(());
        }
        Ok(false)
    }
}

async fn read_loop<St>(
    hub: &Arc<Hub>,
    conn_id: u64,
    mut stream: St,
    ob: &Arc<Outbox>,
    session: &mut Option<Arc<Session>>,
) where
    St: futures_util::Stream<Item = Result<Message, WsError>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + hub.cfg.auth_timeout;
    let mut limit = RateLimit::new(hub.cfg.rate_limit_per_sec);
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut shutdown = hub.shutdown.clone();
    let mut warned_at: Option<Instant> = None;
    let mut last_rx = tokio::time::Instant::now();
    let mut pinged = false;
    loop {
        let next = tokio::select! {
            m = stream.next() => {
                last_rx = tokio::time::Instant::now();
                pinged = false;
                m
            }
            // A terminal whose network vanished (no FIN) is found by a WebSocket ping: every
            // browser answers one; silence after it closes the socket and starts the grace.
            () = tokio::time::sleep_until(last_rx + hub.cfg.idle_timeout), if !pinged => {
                pinged = true;
                ob.push(Frame::Ping);
                continue;
            }
            () = tokio::time::sleep_until(last_rx + hub.cfg.idle_timeout * 2), if pinged => {
                tracing::info!(conn_id, "no traffic from the terminal; closing");
                ob.push(Frame::Close { code: 1001, reason: "no traffic" });
                return pending_forever().await;
            }
            () = tokio::time::sleep_until(deadline), if session.is_none() => {
                ob.push(Frame::Close { code: 4001, reason: "authentication timeout" });
                return pending_forever().await;
            }
            _ = shutdown.changed(), if session.is_none() => {
                ob.push(Frame::Close { code: 1001, reason: "hub shutting down" });
                return pending_forever().await;
            }
        };
        let text = match frame_text(conn_id, next, ob) {
            Ok(t) => t,
            Err(Flow::Skip) => continue,
            Err(Flow::End) => return,
            Err(Flow::Hold) => return pending_forever().await,
        };
        match rate_check(&mut limit, &mut warned_at, conn_id, ob) {
            Ok(()) => {}
            Err(Flow::Skip) => continue,
            Err(Flow::End) => return,
            Err(Flow::Hold) => return pending_forever().await,
        }
        let parsed = match parse(text.as_str()) {
            Ok(p) => p,
            Err(e) => {
                hub.metrics.received("invalid");
                ob.text(outbound::error(e.code, &e.message, e.request_id.as_ref()));
                continue;
            }
        };
        match dispatch(hub, conn_id, ob, session, &permits, parsed).await {
            Ok(()) | Err(Flow::Skip) => {}
            Err(Flow::End) => return,
            Err(Flow::Hold) => return pending_forever().await,
        }
    }
}

/// Why the read loop does not go on with a frame.
enum Flow {
    /// Read the next frame.
    Skip,
    /// The socket is gone: stop reading.
    End,
    /// A close frame is queued: stop reading and wait for the writer to send it.
    Hold,
}

/// The text of one read result, or what to do instead (close frames for violations).
fn frame_text(
    conn_id: u64,
    next: Option<Result<Message, WsError>>,
    ob: &Outbox,
) -> Result<Utf8Bytes, Flow> {
    match next {
        None | Some(Ok(Message::Close(_))) => Err(Flow::End),
        Some(Err(WsError::Capacity(_))) => {
            ob.push(Frame::Close {
                code: 1009,
                reason: "frame larger than 256 KiB",
            });
            Err(Flow::Hold)
        }
        Some(Err(e)) => {
            tracing::debug!(conn_id, error = %e, "websocket read failed");
            // RFC 6455 §7.1.7: a violation is answered with a close frame, not a dropped
            // socket; a socket that is already gone has nobody to tell.
            let Some((code, reason)) = violation_close(&e) else {
                return Err(Flow::End);
            };
            ob.push(Frame::Close { code, reason });
            Err(Flow::Hold)
        }
        Some(Ok(Message::Text(t))) => Ok(t),
        Some(Ok(Message::Binary(_))) => {
            ob.text(outbound::error(
                "unsupported_frame",
                "binary frames are not supported; send JSON text frames",
                None,
            ));
            Err(Flow::Skip)
        }
        Some(Ok(_)) => Err(Flow::Skip), // ping/pong/raw frames: handled by the protocol layer
    }
}

/// Applies the rate limit: a warning at most every 500 ms, a close when flooding goes on.
fn rate_check(
    limit: &mut RateLimit,
    warned_at: &mut Option<Instant>,
    conn_id: u64,
    ob: &Outbox,
) -> Result<(), Flow> {
    match limit.check() {
        Ok(true) => Ok(()),
        Ok(false) => {
            let now = Instant::now();
            if warned_at.is_none_or(|w| now.duration_since(w) > Duration::from_millis(500)) {
                *warned_at = Some(now);
                ob.text(outbound::error(
                    "rate_limited",
                    "too many messages; slow down",
                    None,
                ));
            }
            Err(Flow::Skip)
        }
        Err(()) => {
            tracing::warn!(conn_id, "closing a flooding connection");
            ob.push(Frame::Close {
                code: 1008,
                reason: "rate limit exceeded",
            });
            Err(Flow::Hold)
        }
    }
}

/// Acts on one parsed message: `PING`, `AUTH` before a session, and every other request sent
/// on to the engine (with backpressure on a terminal that does not read its replies).
async fn dispatch(
    hub: &Arc<Hub>,
    conn_id: u64,
    ob: &Arc<Outbox>,
    session: &mut Option<Arc<Session>>,
    permits: &Arc<Semaphore>,
    parsed: crate::protocol::Parsed,
) -> Result<(), Flow> {
    let rid = parsed.request_id;
    hub.metrics.received(parsed.msg.type_name());
    match (parsed.msg, session.as_ref()) {
        (Inbound::Ping, _) => ob.text(outbound::reply(outbound::pong(), rid.as_ref())),
        (Inbound::Auth(m), None) => match authenticate(hub, conn_id, ob, m).await {
            Ok((s, cursor)) => {
                tracing::info!(conn_id, terminal = %s.terminal_id, role = s.role.as_str(), "terminal authenticated");
                *session = Some(s.clone());
                hub.engine.send(Cmd::Connected {
                    session: s,
                    cursor,
                    request_id: rid,
                });
            }
            Err(e) => {
                tracing::info!(
                    conn_id,
                    reason = e.code,
                    "authentication refused: {}",
                    e.message
                );
                ob.text(outbound::auth_fail(e.code, &e.message, rid.as_ref()));
                ob.push(Frame::Close {
                    code: 4003,
                    reason: "authentication failed",
                });
                return Err(Flow::Hold);
            }
        },
        (_, None) => ob.text(outbound::error(
            "not_authenticated",
            "send AUTH first",
            rid.as_ref(),
        )),
        (Inbound::Auth(_), Some(_)) => ob.text(outbound::error(
            "already_authenticated",
            "this socket is already authenticated",
            rid.as_ref(),
        )),
        (msg, Some(s)) => {
            // Backpressure: a terminal that does not read its replies stops being read.
            while ob.queued_other.load(Ordering::Relaxed) > MAX_QUEUED_OTHER {
                ob.drained.notified().await;
            }
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return Err(Flow::End);
            };
            let cmd = Cmd::Request {
                session: s.clone(),
                request_id: rid.clone(),
                msg,
                permit: Some(permit),
            };
            if !hub.engine.send(cmd) {
                ob.text(outbound::error(
                    "shutting_down",
                    "the hub is shutting down",
                    rid.as_ref(),
                ));
            }
        }
    }
    Ok(())
}

/// The close code and reason for a read error that the peer should be told about: 1007 for
/// text that is not UTF-8, 1002 for any other protocol violation; `None` when the connection
/// itself is gone (reset, closed, I/O error).
fn violation_close(e: &WsError) -> Option<(u16, &'static str)> {
    use tokio_tungstenite::tungstenite::error::ProtocolError as P;
    match e {
        WsError::Utf8(_) => Some((1007, "text frame is not valid UTF-8")),
        WsError::Protocol(
            P::ResetWithoutClosingHandshake | P::ReceivedAfterClosing | P::SendAfterClosing,
        ) => None,
        WsError::Protocol(_) => Some((1002, "WebSocket protocol violation")),
        _ => None,
    }
}

/// Lets the writer finish sending a close frame; the select in `serve` ends with it.
async fn pending_forever() {
    std::future::pending::<()>().await;
}

/// Who an `AUTH` says it is, once its credential is checked.
struct Who {
    /// A JWT's `sub` (None in open mode and for Odoo sessions).
    subject: Option<String>,
    uid: Value,
    role: Role,
    name: Option<String>,
}

/// Checks the credential of an `AUTH` as `HUB_AUTH_MODE` asks: none (open), a JWT, or an Odoo
/// session (odoo mode also takes JWTs).
async fn identify(hub: &Hub, m: &AuthMsg) -> Result<Who, ProtoError> {
    Ok(match hub.cfg.auth_mode {
        AuthMode::Open => {
            let role = m
                .role
                .as_deref()
                .and_then(Role::parse)
                .unwrap_or(Role::Cashier);
            Who {
                subject: None,
                uid: Value::Null,
                role,
                name: None,
            }
        }
        AuthMode::Token | AuthMode::Odoo => {
            let token = m
                .token
                .as_deref()
                .filter(|t| !t.is_empty())
                .ok_or_else(|| ProtoError::new("invalid_token", "AUTH needs a token"))?;
            if hub.cfg.auth_mode == AuthMode::Odoo
                && !crate::upstream::session_cache::looks_like_jwt(token)
            {
                let id = crate::upstream::session_cache::validate(hub, token).await?;
                Who {
                    subject: None,
                    uid: id.uid,
                    role: id.role,
                    name: id.name,
                }
            } else {
                let Some(v) = hub.verifier.as_ref() else {
                    return Err(ProtoError::new(
                        "invalid_token",
                        "no verification key is configured",
                    ));
                };
                let id = v
                    .verify(token)
                    .map_err(|e| ProtoError::new(e.reason(), e.to_string()))?;
                Who {
                    subject: Some(id.subject),
                    uid: id.uid,
                    role: id.role,
                    name: id.name,
                }
            }
        }
    })
}

async fn authenticate(
    hub: &Hub,
    conn_id: u64,
    ob: &Arc<Outbox>,
    m: AuthMsg,
) -> Result<(Arc<Session>, Option<u64>), ProtoError> {
    let Who {
        subject,
        uid,
        role,
        name: token_name,
    } = identify(hub, &m).await?;
    let terminal_id = m
        .terminal_id
        .or_else(|| subject.clone())
        .ok_or_else(|| ProtoError::new("invalid_message", "AUTH needs a terminalId"))?;
    // A JWT's subject is the identity (docs/protocol.md "Authentication and identity"): the
    // terminal itself, or the device that names its terminal. Whether that terminal is free for
    // this subject is the engine's call.
    if let Some(sub) = &subject {
        if terminal_id != *sub && m.device_id.as_deref() != Some(sub.as_str()) {
            return Err(ProtoError::new(
                "terminal_mismatch",
                format!("this token is for {sub:?}: terminalId or deviceId must be {sub:?}"),
            ));
        }
    }
    if terminal_id.is_empty()
        || terminal_id.len() > MAX_ID_LEN
        || terminal_id.chars().any(char::is_control)
    {
        return Err(ProtoError::new(
            "invalid_message",
            "terminalId must be 1-128 characters",
        ));
    }
    let name: String = m
        .name
        .or(token_name)
        .unwrap_or_else(|| terminal_id.clone())
        .chars()
        .take(128)
        .collect();
    if let Some(names) = &m.stations {
        let mask = crate::station::mask_of(names.iter().map(String::as_str))
            .map_err(|e| ProtoError::new("invalid_message", format!("AUTH: {e}")))?;
        ob.stations.store(mask, Ordering::Relaxed);
    }
    let session = Session {
        conn_id,
        terminal_id,
        device_id: m.device_id,
        subject,
        name,
        uid_json: uid.to_string(),
        role,
        outbox: ob.clone(),
        connected_ms: now_ms(),
    };
    Ok((Arc::new(session), m.cursor))
}
