//! The write side of a terminal's WebSocket: frames (headers encoded with tungstenite's
//! `FrameHeader`) are written with one vectored write per batch, straight from the shared event
//! texts.
//!
//! Writing through tungstenite cost, for every frame to every terminal, a copy of the text
//! into a per-connection buffer, a lock shared with the reader, and a `send` system call
//! per 16 KiB; with 50 terminals flat out a `perf` profile had the `send` calls alone at a
//! third of the hub's CPU (docs/benchmarks.md). Here a batch of up to `MAX_FRAMES` frames
//! is one `writev` of their headers and the texts every terminal shares, and no terminal
//! keeps a write buffer of its own. tungstenite still reads (and validates) what terminals
//! send; the few frames it writes itself (pongs, close replies) reach this writer through
//! the terminal's outbox as [`Frame::Raw`](crate::engine::outbox::Frame::Raw), whole frames
//! in order.

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame as WsFrame, FrameHeader};

use crate::engine::outbox::{Broadcast, Frame, Outbox, Utf8Bytes, MAX_QUEUED_OTHER};

/// Frames written per system call at most.
pub const MAX_FRAMES: usize = 256;
/// Bytes after which the pending frames are written even if fewer than `MAX_FRAMES`.
const MAX_PENDING_BYTES: usize = 256 * 1024;
// `writev` takes at most 1024 buffers (`IOV_MAX`); a frame is two, and a batch is written
// once it holds `MAX_FRAMES` frames.
const _: () = assert!(2 * MAX_FRAMES <= 1024);

const OP_TEXT: OpCode = OpCode::Data(Data::Text);
const OP_PING: OpCode = OpCode::Control(Control::Ping);

/// The payload of one pending frame, kept alive until it is written.
enum Payload {
    None,
    Text(Utf8Bytes),
    Shared(Arc<Utf8Bytes>),
    Event(Arc<Broadcast>),
    /// Whole frames encoded elsewhere (tungstenite's pongs, a close frame).
    Raw(Arc<[u8]>),
}

impl Payload {
    fn bytes(&self) -> &[u8] {
        match self {
            Payload::None => &[],
            Payload::Text(t) => t.as_bytes(),
            Payload::Shared(t) => t.as_bytes(),
            Payload::Event(e) => e.text.as_bytes(),
            Payload::Raw(r) => r,
        }
    }
}

/// One pending frame: its header (up to 10 bytes; empty for raw frames) and its payload.
struct Pending {
    header: [u8; 10],
    header_len: u8,
    payload: Payload,
}

/// Encodes frames and writes them in batches. Server frames are never masked (RFC 6455 §5.1).
pub struct FrameWriter<W> {
    io: W,
    pending: Vec<Pending>,
    pending_bytes: usize,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(io: W) -> FrameWriter<W> {
        FrameWriter {
            io,
            pending: Vec::with_capacity(MAX_FRAMES),
            pending_bytes: 0,
        }
    }

    /// A text frame of a reply or a catch-up chunk.
    pub async fn text(&mut self, text: Utf8Bytes) -> std::io::Result<()> {
        self.push(OP_TEXT, Payload::Text(text)).await
    }

    /// A direct reply shared with other queues (`SYNC_STATUS`).
    pub async fn shared(&mut self, text: Arc<Utf8Bytes>) -> std::io::Result<()> {
        self.push(OP_TEXT, Payload::Shared(text)).await
    }

    /// A broadcast event, written from the text every terminal shares.
    pub async fn event(&mut self, event: Arc<Broadcast>) -> std::io::Result<()> {
        self.push(OP_TEXT, Payload::Event(event)).await
    }

    /// Whole frames encoded by tungstenite (pongs, close replies).
    pub async fn raw(&mut self, frames: Arc<[u8]>) -> std::io::Result<()> {
        self.push(OP_TEXT, Payload::Raw(frames)).await
    }

    /// A WebSocket ping with no payload.
    pub async fn ping(&mut self) -> std::io::Result<()> {
        self.push(OP_PING, Payload::None).await
    }

    /// A close frame with `code` and `reason`, written at once.
    pub async fn close(&mut self, code: u16, reason: &str) -> std::io::Result<()> {
        let mut frame = Vec::with_capacity(14 + reason.len());
        WsFrame::close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        }))
        .format(&mut frame)
        .map_err(std::io::Error::other)?;
        self.push(OP_TEXT, Payload::Raw(frame.into())).await?;
        self.flush().await
    }

    /// Queues a frame of `opcode` (ignored for raw frames, which carry their own header).
    async fn push(&mut self, opcode: OpCode, payload: Payload) -> std::io::Result<()> {
        let size = payload.bytes().len();
        let (header, header_len) = if matches!(payload, Payload::Raw(_)) {
            ([0; 10], 0)
        } else {
            header(opcode, size)
        };
        self.pending_bytes += size + usize::from(header_len);
        self.pending.push(Pending {
            header,
            header_len,
            payload,
        });
        if self.pending.len() >= MAX_FRAMES || self.pending_bytes >= MAX_PENDING_BYTES {
            self.write_pending().await?;
        }
        Ok(())
    }

    /// Writes every pending frame and flushes the socket.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        self.write_pending().await?;
        self.io.flush().await
    }

    /// Writes the pending frames with as few vectored writes as the socket allows.
    async fn write_pending(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(2 * self.pending.len());
        for p in &self.pending {
            if p.header_len > 0 {
                slices.push(IoSlice::new(&p.header[..usize::from(p.header_len)]));
            }
            let b = p.payload.bytes();
            if !b.is_empty() {
                slices.push(IoSlice::new(b));
            }
        }
        let mut rest: &mut [IoSlice<'_>] = &mut slices;
        while !rest.is_empty() {
            let written = self.io.write_vectored(rest).await?;
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut rest, written);
        }
        self.pending.clear();
        self.pending_bytes = 0;
        Ok(())
    }
}

/// The header of an unmasked final frame (tungstenite's encoding), and how many of the 10
/// bytes it uses.
fn header(opcode: OpCode, len: usize) -> ([u8; 10], u8) {
    let h = FrameHeader {
        opcode,
        ..FrameHeader::default()
    };
    let len = u64::try_from(len).unwrap_or(u64::MAX);
    let mut buf = [0u8; 10];
    // An unmasked header is at most 10 bytes, so writing it into 10 cannot fail.
    let _ = h.format(len, &mut &mut buf[..]);
    (buf, u8::try_from(h.len(len)).unwrap_or(10))
}

/// The socket as tungstenite sees it: it reads from the socket, and what tungstenite writes
/// itself (a pong, a close reply: whole frames, as it writes its buffer in one call) is queued
/// in the terminal's outbox, so the [`FrameWriter`] alone writes to the socket.
pub struct ReadSide<S> {
    rd: ReadHalf<S>,
    ob: Arc<Outbox>,
}

impl<S> ReadSide<S> {
    pub fn new(rd: ReadHalf<S>, ob: Arc<Outbox>) -> ReadSide<S> {
        ReadSide { rd, ob }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadSide<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.rd).poll_read(cx, buf)
    }
}

impl<S> AsyncWrite for ReadSide<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if self
            .ob
            .queued_other
            .load(std::sync::atomic::Ordering::Relaxed)
            < MAX_QUEUED_OTHER
        {
            self.ob.push(Frame::Raw(Arc::from(buf)));
        } else {
            // A terminal that sends pings without reading the pongs (nor anything else) cannot
            // make the hub queue pongs without end: RFC 6455 §5.5.3 lets an endpoint answer only
            // some of many pings.
            tracing::debug!("terminal not reading: a pong or close reply is dropped");
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn pongs_for_a_terminal_that_does_not_read_are_bounded() {
        let (ob, mut rx) = Outbox::new(0);
        let (rd, _wr) = tokio::io::split(tokio::io::empty());
        let mut side = ReadSide::new(rd, ob.clone());
        let pong = [0x8a_u8, 0];
        for _ in 0..5000 {
            // Every write is taken (tungstenite must not see an error), but not all queued.
            assert_eq!(side.write(&pong).await.unwrap(), 2);
        }
        let mut queued = 0;
        while rx.try_recv().is_ok() {
            queued += 1;
        }
        assert_eq!(queued, MAX_QUEUED_OTHER);
    }

    #[tokio::test]
    async fn a_batch_larger_than_one_writev_arrives_whole_and_in_order() {
        let (a, mut b) = tokio::io::duplex(64 * 1024);
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            b.read_to_end(&mut all).await.map(|_| all)
        });
        let mut w = FrameWriter::new(a);
        let texts: Vec<String> = (0..700)
            .map(|i| format!("{i:0>w$}", w = 150 + i % 300))
            .collect();
        for t in &texts {
            w.text(Utf8Bytes::from(t.clone())).await.unwrap();
        }
        w.close(1001, "bye").await.unwrap();
        drop(w);
        let bytes = reader.await.unwrap().unwrap();
        // Decode: every text frame, in order, then the close frame.
        let mut at = 0;
        for t in &texts {
            assert_eq!(bytes[at], 0x81);
            let (len, hl) = match bytes[at + 1] {
                126 => (
                    usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]])),
                    4,
                ),
                n => (usize::from(n), 2),
            };
            assert_eq!(&bytes[at + hl..at + hl + len], t.as_bytes());
            at += hl + len;
        }
        assert_eq!(&bytes[at..], &[0x88, 5, 0x03, 0xe9, b'b', b'y', b'e'][..]);
    }
}
