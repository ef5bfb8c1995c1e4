//! Delta payloads (format 3): the target images as a zstd-compressed stream of operations
//! "copy N bytes of the base image from offset O" and "these N literal bytes", made by an
//! rsync-style block index of the base (`docs/updates.md` §2.1 says why not zstd
//! `--patch-from`). Applying one is a stream with bounded memory: the zstd window (8 MiB, set
//! at creation) plus the caller's buffer; copies are read from the base device as they come.
//!
//! Ops stream (integers little-endian), ended by `E`; nothing may follow it:
//!
//! ```text
//! 'L' u32 len, len bytes      literal (len <= MAX_LITERAL)
//! 'C' u64 offset, u64 len     copy from the base (offset + len <= base size)
//! 'E'                         end
//! ```
//!
//! The base is the root base image, followed (format 4) by the boot base image: offsets from the
//! root base's size on read the booted slot's boot partition ([`Bases`]). One copy may run from
//! the end of one into the start of the other (an unchanged root image followed by an unchanged
//! boot image is one copy).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;

/// Size of the base blocks indexed when a delta is made (the smallest copy found).
pub const BLOCK: usize = 4096;
/// Largest literal op (the encoder splits longer runs).
pub const MAX_LITERAL: u32 = 1 << 20;
/// zstd window of the ops stream: what a device needs in memory to apply a delta.
pub const WINDOW_LOG: u32 = 23;

const OP_LITERAL: u8 = b'L';
const OP_COPY: u8 = b'C';
const OP_END: u8 = b'E';

/// How much of a target came from the base and how much is new (`bundle create` prints it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeltaStats {
    pub copied: u64,
    pub literal: u64,
}

/// rsync's weak checksum of a block: two 16-bit sums that roll one byte at a time.
#[derive(Clone, Copy)]
struct Rolling {
    a: u32,
    b: u32,
}

impl Rolling {
    // A block is at most `BLOCK` (4 KiB) bytes: its length and positions fit a u32.
    #[allow(clippy::cast_possible_truncation)]
    fn new(block: &[u8]) -> Rolling {
        let (mut a, mut b) = (0u32, 0u32);
        let n = block.len() as u32;
        for (i, &x) in block.iter().enumerate() {
            a = a.wrapping_add(u32::from(x));
            b = b.wrapping_add((n - i as u32).wrapping_mul(u32::from(x)));
        }
        Rolling { a, b }
    }

    #[allow(clippy::cast_possible_truncation)] // BLOCK is 4096
    fn roll(&mut self, out: u8, inn: u8) {
        self.a = self
            .a
            .wrapping_sub(u32::from(out))
            .wrapping_add(u32::from(inn));
        self.b = self
            .b
            .wrapping_sub((BLOCK as u32).wrapping_mul(u32::from(out)))
            .wrapping_add(self.a);
    }

    fn digest(self) -> u32 {
        (self.a & 0xffff) | (self.b << 16)
    }
}

/// Length of the common prefix of `a` and `b` (page-sized comparisons first).
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let max = a.len().min(b.len());
    let mut n = 0;
    while n + BLOCK <= max && a[n..n + BLOCK] == b[n..n + BLOCK] {
        n += BLOCK;
    }
    while n < max && a[n] == b[n] {
        n += 1;
    }
    n
}

/// Writes ops to `out` as they are found.
struct Emitter<'w, W: Write> {
    out: &'w mut W,
    stats: DeltaStats,
}

impl<W: Write> Emitter<'_, W> {
    fn literal(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = data.len().min(MAX_LITERAL as usize);
            self.out.write_all(&[OP_LITERAL])?;
            let len = u32::try_from(n).expect("n <= MAX_LITERAL, a u32");
            self.out.write_all(&len.to_le_bytes())?;
            self.out.write_all(&data[..n])?;
            self.stats.literal += n as u64;
            data = &data[n..];
        }
        Ok(())
    }

    fn copy(&mut self, offset: usize, len: usize) -> io::Result<()> {
        self.out.write_all(&[OP_COPY])?;
        self.out.write_all(&(offset as u64).to_le_bytes())?;
        self.out.write_all(&(len as u64).to_le_bytes())?;
        self.stats.copied += len as u64;
        Ok(())
    }
}

/// Writes the ops that rebuild `target` from `base` into `out` (the caller compresses them).
/// `base` is the root base, followed by the boot base for format 4 (see [`Bases`]).
/// Every block-aligned `BLOCK` of the base is indexed; the target is scanned with a rolling
/// checksum, and each match is grown both ways byte by byte, so shifted content (squashfs
/// places files one after another) is found at any offset.
pub fn encode<W: Write>(base: &[u8], target: &[u8], out: &mut W) -> io::Result<DeltaStats> {
    let mut index: HashMap<u32, usize> = HashMap::with_capacity(base.len() / BLOCK + 1);
    for (i, block) in base.chunks_exact(BLOCK).enumerate().rev() {
        // Reverse, so the first block with a checksum wins (earliest offset).
        index.insert(Rolling::new(block).digest(), i * BLOCK);
    }
    let mut em = Emitter {
        out,
        stats: DeltaStats::default(),
    };
    let (mut i, mut lit_start) = (0usize, 0usize);
    let mut weak = (target.len() >= BLOCK).then(|| Rolling::new(&target[..BLOCK]));
    while let Some(w) = weak.as_mut() {
        let hit = index
            .get(&w.digest())
            .copied()
            .filter(|&bo| base[bo..bo + BLOCK] == target[i..i + BLOCK]);
        if let Some(bo) = hit {
            let back = target[lit_start..i]
                .iter()
                .rev()
                .zip(base[..bo].iter().rev())
                .take_while(|(x, y)| x == y)
                .count();
            let fwd = BLOCK + common_prefix(&target[i + BLOCK..], &base[bo + BLOCK..]);
            em.literal(&target[lit_start..i - back])?;
            em.copy(bo - back, back + fwd)?;
            i += fwd;
            lit_start = i;
            weak = (i + BLOCK <= target.len()).then(|| Rolling::new(&target[i..i + BLOCK]));
            continue;
        }
        if i + BLOCK < target.len() {
            w.roll(target[i], target[i + BLOCK]);
            i += 1;
        } else {
            weak = None;
        }
    }
    em.literal(&target[lit_start..])?;
    em.out.write_all(&[OP_END])?;
    Ok(em.stats)
}

/// What is being produced by a [`DeltaReader`].
enum Op {
    Next,
    Literal(u32),
    Copy { offset: u64, len: u64 },
    Ended,
}

/// The base images a delta copies from: the root base, then the optional boot base, read as
/// one range of offsets (`encode` saw them concatenated the same way).
pub struct Bases {
    root: File,
    root_size: u64,
    boot: Option<(File, u64)>,
}

impl Bases {
    /// `root` holds the root base in its first `root_size` bytes (checked against the manifest
    /// by the caller before this is built).
    pub fn new(root: File, root_size: u64) -> Self {
        Bases {
            root,
            root_size,
            boot: None,
        }
    }

    /// Adds the boot base: `boot` holds it in its first `size` bytes (checked likewise).
    #[must_use]
    pub fn with_boot(mut self, boot: File, size: u64) -> Self {
        self.boot = Some((boot, size));
        self
    }

    /// Size of the whole range a copy may address.
    fn size(&self) -> u64 {
        self.root_size + self.boot.as_ref().map_or(0, |b| b.1)
    }

    /// Reads at `offset` of the range, never across the end of the root base (the caller
    /// loops).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if offset < self.root_size {
            let left = usize::try_from(self.root_size - offset).unwrap_or(usize::MAX);
            let want = buf.len().min(left);
            return self.root.read_at(&mut buf[..want], offset);
        }
        match &self.boot {
            Some((f, _)) => f.read_at(buf, offset - self.root_size),
            None => Ok(0),
        }
    }
}

/// The target images rebuilt from an ops stream and the base images, as a reader: the install
/// path writes, hashes and reads back what it yields exactly as for a full bundle.
pub struct DeltaReader<R: Read> {
    ops: R,
    bases: Bases,
    op: Op,
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl<R: Read> DeltaReader<R> {
    /// `ops` is the decompressed ops stream; `bases` the base images it copies from.
    pub fn new(ops: R, bases: Bases) -> Self {
        DeltaReader {
            ops,
            bases,
            op: Op::Next,
        }
    }

    fn next_op(&mut self) -> io::Result<Op> {
        let mut tag = [0u8; 1];
        if self.ops.read(&mut tag)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "delta ops stream ends without its end mark",
            ));
        }
        match tag[0] {
            OP_LITERAL => {
                let mut n = [0u8; 4];
                self.ops.read_exact(&mut n)?;
                let n = u32::from_le_bytes(n);
                if n > MAX_LITERAL {
                    return Err(invalid(format!("delta literal of {n} bytes is too long")));
                }
                Ok(Op::Literal(n))
            }
            OP_COPY => {
                let mut b = [0u8; 16];
                self.ops.read_exact(&mut b)?;
                let offset = u64::from_le_bytes(b[..8].try_into().unwrap_or_default());
                let len = u64::from_le_bytes(b[8..].try_into().unwrap_or_default());
                let size = self.bases.size();
                if offset.checked_add(len).is_none_or(|end| end > size) {
                    return Err(invalid(format!(
                        "delta copies {len} bytes at {offset}, beyond the {size}-byte base image"
                    )));
                }
                Ok(Op::Copy { offset, len })
            }
            OP_END => {
                let mut extra = [0u8; 1];
                if self.ops.read(&mut extra)? != 0 {
                    return Err(invalid("delta ops stream has data after its end mark"));
                }
                Ok(Op::Ended)
            }
            t => Err(invalid(format!("unknown delta op {t:#04x}"))),
        }
    }
}

impl<R: Read> Read for DeltaReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.op {
                Op::Ended => return Ok(0),
                Op::Next => self.op = self.next_op()?,
                Op::Literal(0) | Op::Copy { len: 0, .. } => self.op = Op::Next,
                Op::Literal(rem) => {
                    let want = buf.len().min(rem as usize);
                    let n = self.ops.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "delta literal cut short",
                        ));
                    }
                    // n <= want <= rem, a u32.
                    self.op = Op::Literal(rem - u32::try_from(n).unwrap_or(rem));
                    return Ok(n);
                }
                Op::Copy { offset, len } => {
                    let want = buf.len().min(usize::try_from(len).unwrap_or(usize::MAX));
                    let n = self.bases.read_at(&mut buf[..want], offset)?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "base image ends before a delta copy",
                        ));
                    }
                    self.op = Op::Copy {
                        offset: offset + n as u64,
                        len: len - n as u64,
                    };
                    return Ok(n);
                }
            }
        }
    }
}
