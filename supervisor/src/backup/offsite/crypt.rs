//! The offsite object format: the database compressed with zstd, then encrypted with
//! XChaCha20-Poly1305 in the STREAM construction (`RustCrypto` `chacha20poly1305`, `stream`
//! feature), so storage (and anyone who reads the bucket) sees neither orders nor key.
//!
//! Layout: a 43-byte header (`MAGIC`, the 8-byte key id, a random 19-byte nonce prefix),
//! then chunks of [`CHUNK`] plaintext bytes plus a 16-byte tag each; the header is the
//! associated data of every chunk. The last chunk is shorter than [`CHUNK`] (possibly empty)
//! and sealed with STREAM's "last" flag: an object cut anywhere fails authentication, and so
//! does one with chunks dropped, swapped or appended. The key id (the start of
//! SHA-256("poshub offsite key id" + key)) lets a wrong `BACKUP_KEY` be named as such instead
//! of as damage; it says nothing about the key itself.
//!
//! Why a STREAM AEAD and not `age`: the box holds one symmetric key (no recipients to
//! manage), the whole backup never sits in memory, and `ChaCha20` is fast in software on a
//! Pi 4, whose Cortex-A72 has no AES instructions. `age` uses the same construction (STREAM,
//! ChaCha20-Poly1305, 64 KiB chunks) but would add its key exchange and localisation crates.

use std::io::{self, Read, Write};

use chacha20poly1305::aead::stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::aead::{KeyInit, Payload};
use chacha20poly1305::XChaCha20Poly1305;
use sha2::{Digest, Sha256};

/// First bytes of every offsite object (format version 1).
pub const MAGIC: &[u8; 16] = b"POSHUB-OFFSITE1\n";
/// Plaintext bytes per chunk.
pub const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;
const NONCE: usize = 19;
const KEY_ID: usize = 8;
const HEADER: usize = MAGIC.len() + KEY_ID + NONCE;
/// zstd level: fast on a Pi, and a redb file compresses well at it.
const ZSTD_LEVEL: i32 = 3;

/// Why an object could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    #[error("not a poshub offsite copy (its first bytes are not {:?})", String::from_utf8_lossy(MAGIC).trim())]
    NotOffsite,
    #[error(
        "encrypted with another BACKUP_KEY (key id {found}; this box's BACKUP_KEY has key id \
         {ours}): nothing was restored"
    )]
    WrongKey { found: String, ours: String },
    #[error(
        "the copy is truncated (it ends before its last chunk, or its end is damaged): nothing \
         was restored"
    )]
    Truncated,
    #[error("the copy is damaged (chunk {0} fails authentication): nothing was restored")]
    Damaged(u64),
    #[error("the decrypted copy does not decompress: {0}")]
    Decompress(io::Error),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A 32-byte key (`BACKUP_KEY`, 64 hex digits).
#[derive(Clone)]
pub struct Key([u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key(id {})", self.id_hex())
    }
}

impl Key {
    /// Parses 64 hex digits; the error says what is wrong without echoing the value.
    pub fn from_hex(text: &str) -> Result<Key, String> {
        let t = text.trim();
        let bytes = crate::fsutil::unhex(t)
            .filter(|b| b.len() == 32)
            .ok_or_else(|| {
                format!(
                    "must be 64 hex digits (32 random bytes, e.g. `openssl rand -hex 32`), not {} \
                 characters",
                    t.len()
                )
            })?;
        let mut k = [0u8; 32];
        k.copy_from_slice(&bytes);
        Ok(Key(k))
    }

    /// The key id written into every object.
    pub fn id(&self) -> [u8; KEY_ID] {
        let mut h = Sha256::new();
        h.update(b"poshub offsite key id");
        h.update(self.0);
        let mut id = [0u8; KEY_ID];
        id.copy_from_slice(&h.finalize()[..KEY_ID]);
        id
    }

    /// [`Key::id`] in hex, for messages.
    pub fn id_hex(&self) -> String {
        crate::fsutil::hex(&self.id())
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }
}

/// Compresses and encrypts `src` into `dst`; returns the bytes written.
pub fn seal(key: &Key, src: &mut impl Read, dst: impl Write) -> io::Result<u64> {
    let mut header = [0u8; HEADER];
    header[..MAGIC.len()].copy_from_slice(MAGIC);
    header[MAGIC.len()..MAGIC.len() + KEY_ID].copy_from_slice(&key.id());
    let nonce = random_nonce()?;
    header[MAGIC.len() + KEY_ID..].copy_from_slice(&nonce);
    let mut w = SealWriter {
        enc: Some(EncryptorBE32::from_aead(key.cipher(), (&nonce).into())),
        header,
        buf: Vec::with_capacity(CHUNK),
        out: CountingWriter { inner: dst, n: 0 },
    };
    w.out.write_all(&header)?;
    let mut z = zstd::stream::write::Encoder::new(&mut w, ZSTD_LEVEL)?;
    io::copy(src, &mut z)?;
    z.finish()?;
    w.finish()
}

fn random_nonce() -> io::Result<[u8; NONCE]> {
    let mut n = [0u8; NONCE];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut n)?;
    Ok(n)
}

struct CountingWriter<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(b)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Buffers plaintext into chunks and writes them sealed.
struct SealWriter<W> {
    enc: Option<EncryptorBE32<XChaCha20Poly1305>>,
    header: [u8; HEADER],
    buf: Vec<u8>,
    out: CountingWriter<W>,
}

fn aead_err(_: chacha20poly1305::aead::Error) -> io::Error {
    io::Error::other("encryption failed")
}

impl<W: Write> SealWriter<W> {
    /// Seals the last chunk (always shorter than [`CHUNK`]) and flushes.
    fn finish(mut self) -> io::Result<u64> {
        let enc = self
            .enc
            .take()
            .ok_or_else(|| io::Error::other("sealed twice"))?;
        let last = enc
            .encrypt_last(Payload {
                msg: &self.buf,
                aad: &self.header,
            })
            .map_err(aead_err)?;
        self.out.write_all(&last)?;
        self.out.flush()?;
        Ok(self.out.n)
    }
}

impl<W: Write> Write for SealWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            // A full buffer is sealed only once more data follows: the last chunk stays short.
            if self.buf.len() == CHUNK {
                let enc = self
                    .enc
                    .as_mut()
                    .ok_or_else(|| io::Error::other("sealed"))?;
                let c = enc
                    .encrypt_next(Payload {
                        msg: &self.buf,
                        aad: &self.header,
                    })
                    .map_err(aead_err)?;
                self.out.write_all(&c)?;
                self.buf.clear();
            }
            let take = rest.len().min(CHUNK - self.buf.len());
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Decrypts and decompresses `src` into `dst`; returns the plaintext bytes. Nothing is
/// trusted before it authenticated: a wrong key or a damaged object fails with
/// [`CryptError`], and the caller throws `dst` away.
pub fn open(key: &Key, mut src: impl Read, mut dst: impl Write) -> Result<u64, CryptError> {
    let mut header = [0u8; HEADER];
    let got = read_full(&mut src, &mut header)?;
    if got < MAGIC.len() || &header[..MAGIC.len()] != MAGIC {
        return Err(CryptError::NotOffsite);
    }
    if got < HEADER {
        return Err(CryptError::Truncated);
    }
    let found = &header[MAGIC.len()..MAGIC.len() + KEY_ID];
    if found != key.id() {
        return Err(CryptError::WrongKey {
            found: crate::fsutil::hex(found),
            ours: key.id_hex(),
        });
    }
    let nonce: [u8; NONCE] = header[MAGIC.len() + KEY_ID..]
        .try_into()
        .map_err(|_| CryptError::Truncated)?;
    let reader = OpenReader {
        dec: Some(DecryptorBE32::from_aead(key.cipher(), (&nonce).into())),
        header,
        src,
        plain: Vec::new(),
        pos: 0,
        chunk: 0,
    };
    let mut z = zstd::stream::read::Decoder::new(reader)?;
    match io::copy(&mut z, &mut dst) {
        Ok(n) => {
            // zstd may stop at the end of its frame: the rest must still authenticate.
            let mut r = z.finish();
            let mut tail = Vec::new();
            r.read_to_end(&mut tail).map_err(unwrap_crypt)?;
            Ok(n)
        }
        Err(e) => Err(unwrap_crypt(e)),
    }
}

/// An error of the decrypting reader travels through zstd as an `io::Error`; get it back.
fn unwrap_crypt(e: io::Error) -> CryptError {
    if e.get_ref().is_some_and(
        <dyn std::error::Error + std::marker::Send + std::marker::Sync + 'static>::is::<CryptError>,
    ) {
        match e.into_inner().map(
            <dyn std::error::Error + std::marker::Send + std::marker::Sync + 'static>::downcast::<
                CryptError,
            >,
        ) {
            Some(Ok(c)) => *c,
            _ => CryptError::Io(io::Error::other("decryption failed")),
        }
    } else if e.kind() == io::ErrorKind::UnexpectedEof {
        CryptError::Truncated
    } else {
        CryptError::Decompress(e)
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

struct OpenReader<R> {
    dec: Option<DecryptorBE32<XChaCha20Poly1305>>,
    header: [u8; HEADER],
    src: R,
    plain: Vec<u8>,
    pos: usize,
    chunk: u64,
}

impl<R: Read> OpenReader<R> {
    /// Reads and authenticates the next chunk into `plain`; false at the end.
    fn next_chunk(&mut self) -> Result<bool, CryptError> {
        let Some(dec) = self.dec.as_mut() else {
            return Ok(false);
        };
        let mut c = vec![0u8; CHUNK + TAG];
        let got = read_full(&mut self.src, &mut c)?;
        c.truncate(got);
        if got < TAG {
            return Err(CryptError::Truncated);
        }
        let payload = Payload {
            msg: &c,
            aad: &self.header,
        };
        let n = self.chunk;
        self.chunk += 1;
        self.plain = if got == CHUNK + TAG {
            dec.decrypt_next(payload)
                .map_err(|_| CryptError::Damaged(n))?
        } else {
            // A short chunk must be the last one: sealed as last, and nothing after it.
            let dec = self.dec.take().ok_or(CryptError::Truncated)?;
            // A short chunk that is not a valid last one: most likely the object was cut.
            let p = dec
                .decrypt_last(payload)
                .map_err(|_| CryptError::Truncated)?;
            let mut extra = [0u8; 1];
            if read_full(&mut self.src, &mut extra)? != 0 {
                return Err(CryptError::Damaged(n + 1));
            }
            p
        };
        self.pos = 0;
        Ok(true)
    }
}

impl<R: Read> Read for OpenReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.plain.len() {
            match self.next_chunk() {
                Ok(true) => {}
                Ok(false) => return Ok(0),
                Err(e) => return Err(io::Error::other(e)),
            }
        }
        let n = out.len().min(self.plain.len() - self.pos);
        out[..n].copy_from_slice(&self.plain[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> Key {
        Key([b; 32])
    }

    fn sealed(k: &Key, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        seal(k, &mut &data[..], &mut out).expect("seal");
        out
    }

    #[test]
    fn round_trips_and_refuses_wrong_keys_and_damage() {
        // Incompressible (xorshift), so the object spans several chunks.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let data: Vec<u8> = (0..400_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()[0]
            })
            .collect();
        let obj = sealed(&key(1), &data);
        assert!(obj.len() > 3 * CHUNK, "{}", obj.len());
        let mut back = Vec::new();
        assert_eq!(open(&key(1), &obj[..], &mut back).expect("open"), 400_000);
        assert_eq!(back, data);

        let e = open(&key(2), &obj[..], Vec::new()).unwrap_err();
        assert!(matches!(e, CryptError::WrongKey { .. }), "{e}");
        assert!(e.to_string().contains("another BACKUP_KEY"), "{e}");

        for cut in [
            obj.len() - 1,
            HEADER + CHUNK + TAG,
            HEADER + 2 * (CHUNK + TAG),
            100,
        ] {
            let e = open(&key(1), &obj[..cut], Vec::new()).unwrap_err();
            assert!(matches!(e, CryptError::Truncated), "cut at {cut}: {e}");
        }
        let mut flipped = obj.clone();
        flipped[HEADER + CHUNK + 40] ^= 1;
        let e = open(&key(1), &flipped[..], Vec::new()).unwrap_err();
        assert!(matches!(e, CryptError::Damaged(1)), "{e}");
        let e = open(&key(1), &b"PK\x03\x04 a zip file"[..], Vec::new()).unwrap_err();
        assert!(matches!(e, CryptError::NotOffsite), "{e}");
        // An empty database file still makes a valid object.
        let mut back = Vec::new();
        open(&key(1), &sealed(&key(1), b"")[..], &mut back).expect("empty");
        assert!(back.is_empty());
    }

    #[test]
    fn key_parsing_names_the_problem_without_the_value() {
        assert!(Key::from_hex(&"ab".repeat(32)).is_ok());
        let e = Key::from_hex("secret-words").unwrap_err();
        assert!(e.contains("64 hex digits") && !e.contains("secret"), "{e}");
    }
}
