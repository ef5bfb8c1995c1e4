//! A disk that records every operation redb makes on it (write, `set_len`, `sync_data`) and can
//! rebuild what a power cut at any operation leaves on the medium: everything up to the last
//! `sync_data` before the cut, and, in the second mode, also a random subset of the 4 KiB
//! sectors written since (a card may have written some of them, in any order, or half a write).

use std::sync::{Arc, Mutex, PoisonError};

use poshub::store::backend::Opener;
use redb::StorageBackend;

/// The unit a real card writes atomically (or not at all) in the subset mode.
pub const SECTOR: usize = 4096;

/// One operation as the backend saw it.
#[derive(Debug, Clone)]
pub enum Op {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
    Sync,
}

#[derive(Debug, Default)]
struct State {
    /// What reads see (the page cache of a running system).
    live: Vec<u8>,
    ops: Vec<Op>,
    /// Fault injection: `sync_data` answers Ok without making anything durable (a card whose
    /// write cache ignores flushes).
    lying: bool,
}

/// A file offset or length as an index into an in-memory image (which exists, so it fits).
fn idx(n: u64) -> usize {
    usize::try_from(n).expect("offset within the in-memory image")
}

/// The recording disk; clones share the same storage.
#[derive(Debug, Clone, Default)]
pub struct RecordingDisk(Arc<Mutex<State>>);

impl RecordingDisk {
    pub fn new() -> RecordingDisk {
        RecordingDisk::default()
    }

    /// From now on, every sync answers Ok and does nothing: the test must catch it.
    pub fn start_lying(&self) {
        self.state().lying = true;
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Operations done so far: an acknowledgement seen now survives any cut at or after this.
    pub fn ops_done(&self) -> usize {
        self.state().ops.len()
    }

    pub fn ops(&self) -> Vec<Op> {
        self.state().ops.clone()
    }

    /// What `Store::open_on_backend` runs the database on.
    pub fn opener(&self) -> Opener {
        let d = self.clone();
        Opener::new(move || Ok(Box::new(d.clone()) as Box<dyn StorageBackend>))
    }
}

impl StorageBackend for RecordingDisk {
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.state().live.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        let s = self.state();
        let start = idx(offset);
        let src = s.live.get(start..start + out.len()).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "read past the end")
        })?;
        out.copy_from_slice(src);
        Ok(())
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        let mut s = self.state();
        s.live.resize(idx(len), 0);
        s.ops.push(Op::SetLen(len));
        Ok(())
    }

    fn sync_data(&self) -> std::io::Result<()> {
        let mut s = self.state();
        if !s.lying {
            s.ops.push(Op::Sync);
        }
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let mut s = self.state();
        apply_write(&mut s.live, offset, data);
        s.ops.push(Op::Write {
            offset,
            data: data.to_vec(),
        });
        Ok(())
    }
}

fn apply_write(img: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let end = idx(offset) + data.len();
    if img.len() < end {
        img.resize(end, 0);
    }
    img[idx(offset)..end].copy_from_slice(data);
}

fn apply(img: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Write { offset, data } => apply_write(img, *offset, data),
        Op::SetLen(n) => img.resize(idx(*n), 0),
        Op::Sync => {}
    }
}

/// A small deterministic generator (splitmix64), so a failing cut can be replayed from its seed.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

/// Walks the recorded operations in order and yields the medium a cut would leave.
pub struct Replay {
    ops: Vec<Op>,
    /// The medium as of the last sync at or before `synced_to`.
    durable: Vec<u8>,
    /// Operations `[0, synced_to)` are in `durable`.
    synced_to: usize,
}

impl Replay {
    pub fn new(ops: Vec<Op>) -> Replay {
        Replay {
            ops,
            durable: Vec::new(),
            synced_to: 0,
        }
    }

    /// Indices `k` just before each sync (and the end): the strongest cut of each stretch
    /// between two syncs, since every cut inside a stretch leaves the same synced bytes.
    pub fn sync_points(&self) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.ops.len())
            .filter(|&i| matches!(self.ops[i], Op::Sync))
            .collect();
        v.push(self.ops.len());
        v
    }

    /// Advances the durable image to the last sync before op `k` (cuts must come in order).
    fn advance(&mut self, k: usize) {
        let last_sync = self.ops[..k].iter().rposition(|o| matches!(o, Op::Sync));
        let upto = last_sync.map_or(0, |i| i + 1);
        assert!(upto >= self.synced_to, "cuts must be replayed in order");
        for op in &self.ops[self.synced_to..upto] {
            apply(&mut self.durable, op);
        }
        self.synced_to = upto;
    }

    /// The medium after a cut before op `k`: only what was synced (`rng` None), or that plus a
    /// random subset of the sectors written since the last sync (`set_len` kept or not likewise).
    pub fn image_at(&mut self, k: usize, rng: Option<&mut Rng>) -> Vec<u8> {
        self.image_and_kept(k, rng).0
    }

    /// `image_at`, and how many unsynced sectors (or `set_len`) the cut kept.
    pub fn image_and_kept(&mut self, k: usize, rng: Option<&mut Rng>) -> (Vec<u8>, usize) {
        self.advance(k);
        let mut img = self.durable.clone();
        let mut kept = 0;
        let Some(rng) = rng else { return (img, kept) };
        for op in &self.ops[self.synced_to..k] {
            match op {
                Op::Write { offset, data } => {
                    for (i, chunk) in data.chunks(SECTOR).enumerate() {
                        if rng.coin() {
                            apply_write(&mut img, offset + (i * SECTOR) as u64, chunk);
                            kept += 1;
                        }
                    }
                }
                other => {
                    if rng.coin() {
                        apply(&mut img, other);
                        kept += 1;
                    }
                }
            }
        }
        (img, kept)
    }
}
