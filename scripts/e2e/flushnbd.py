#!/usr/bin/env python3
"""An NBD server whose disk keeps only what was flushed, as an SD card does at a power cut.

    flushnbd.py BACKING_FILE SOCKET [--write-through | --ignore-flushes] [--cut-keep FRACTION] [--seed N]

Serves BACKING_FILE on the Unix socket SOCKET (NBD fixed newstyle handshake: NBD_OPT_GO,
NBD_OPT_INFO, NBD_OPT_EXPORT_NAME, NBD_OPT_ABORT; commands READ, WRITE (with FUA), FLUSH,
TRIM, DISC; advertises SEND_FLUSH, SEND_FUA and SEND_TRIM). A write is held in memory (4 KiB
pages) and reaches BACKING_FILE only when the client sends NBD_CMD_FLUSH, or at once when it
carries the FUA flag. Reads see the held writes. Killing the server (SIGKILL) therefore drops
everything the client had not flushed: the host's page cache cannot save it, because it never
got there. Flushed data is written with pwrite, not fsynced: the test cuts the guest's power,
not the host's, and the host's page cache outlives this process.

SIGUSR1 is the same cut with a report, and so is a client that vanishes without NBD_CMD_DISC
(QEMU killed): the server stops serving, prints how many unflushed pages it drops (with
--cut-keep F it first writes a random F of them, seeded by --seed: a real card may also keep
part of what it had not been asked to flush) and exits. SIGUSR2 arms the cut instead: it
comes right after the Nth plain (not FUA) write from then on, N random 1-16 (--seed), once
that write was answered: a cut at a moment when the disk surely holds unflushed data.
Two negative controls show that the tests can fail: --write-through makes every write
durable at once (an ordinary disk file: nothing is lost at a cut); --ignore-flushes answers
FLUSH and FUA without making anything durable (a card that lies about its cache).

One client; the server exits when it leaves.
Python 3.9+, standard library only.
"""

import argparse
import ctypes
import os
import random
import signal
import socket
import struct
import sys

PAGE = 4096

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
OPT_REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698

FLAG_FIXED_NEWSTYLE = 1 << 0
FLAG_NO_ZEROES = 1 << 1

OPT_EXPORT_NAME = 1
OPT_ABORT = 2
OPT_INFO = 6
OPT_GO = 7

REP_ACK = 1
REP_INFO = 3
REP_ERR_UNSUP = (1 << 31) + 1
REP_ERR_INVALID = (1 << 31) + 3

INFO_EXPORT = 0
INFO_BLOCK_SIZE = 3

TFLAG_HAS_FLAGS = 1 << 0
TFLAG_SEND_FLUSH = 1 << 2
TFLAG_SEND_FUA = 1 << 3
TFLAG_SEND_TRIM = 1 << 5

CMD_READ = 0
CMD_WRITE = 1
CMD_DISC = 2
CMD_FLUSH = 3
CMD_TRIM = 4
CMD_FLAG_FUA = 1 << 0

EIO = 5
EINVAL = 22
ENOSPC = 28

MAX_REQUEST = 32 << 20
FALLOC_FL_KEEP_SIZE = 1
FALLOC_FL_PUNCH_HOLE = 2


class Disconnected(Exception):
    """The client closed the connection (or vanished) in the middle of the protocol."""


class FlushDisk:
    """BACKING_FILE plus the writes not yet flushed, kept per 4 KiB page.

    `pending` maps a page number to its 4 KiB content, or to None for a trimmed (zero) page.
    """

    def __init__(self, path, write_through, ignore_flushes):
        self.fd = os.open(path, os.O_RDWR)
        self.size = os.fstat(self.fd).st_size
        self.write_through = write_through
        self.ignore_flushes = ignore_flushes
        self.pending = {}
        self.flushes = 0

    def _base(self, page):
        data = os.pread(self.fd, PAGE, page * PAGE)
        return data + bytes(PAGE - len(data))

    def _page(self, page):
        if page in self.pending:
            held = self.pending[page]
            return bytes(PAGE) if held is None else held
        return self._base(page)

    def read(self, offset, length):
        if not self.pending:
            return os.pread(self.fd, length, offset)
        out = bytearray()
        end = offset + length
        pos = offset
        while pos < end:
            page, skip = divmod(pos, PAGE)
            take = min(PAGE - skip, end - pos)
            out += self._page(page)[skip : skip + take]
            pos += take
        return bytes(out)

    def write(self, offset, data, durable):
        if self.write_through or (durable and not self.ignore_flushes):
            # Durable now; a page held from an earlier write must not overwrite it later.
            self._merge_into_pending(offset, data, keep_only_overlap=True)
            os.pwrite(self.fd, data, offset)
            return
        self._merge_into_pending(offset, data, keep_only_overlap=False)

    def _merge_into_pending(self, offset, data, keep_only_overlap):
        """Writes `data` into the held pages (all of them, or only those already held)."""
        end = offset + len(data)
        pos = offset
        while pos < end:
            page, skip = divmod(pos, PAGE)
            take = min(PAGE - skip, end - pos)
            if page in self.pending or not keep_only_overlap:
                if skip == 0 and take == PAGE:
                    self.pending[page] = bytes(data[pos - offset : pos - offset + PAGE])
                else:
                    cur = bytearray(self._page(page))
                    cur[skip : skip + take] = data[pos - offset : pos - offset + take]
                    self.pending[page] = bytes(cur)
            pos += take

    def trim(self, offset, length, durable):
        """Zeroes the range: whole pages become None (a hole once flushed), edges are rewritten."""
        end = offset + length
        pos = offset
        while pos < end:
            page, skip = divmod(pos, PAGE)
            take = min(PAGE - skip, end - pos)
            if skip == 0 and take == PAGE:
                self.pending[page] = None
            else:
                self._merge_into_pending(pos, bytes(take), keep_only_overlap=False)
            pos += take
        if self.write_through or durable:
            self.flush()

    def flush(self):
        """Makes every held page durable (unless --ignore-flushes)."""
        self.flushes += 1
        if not self.ignore_flushes:
            self._write_pages(sorted(self.pending))
            self.pending.clear()

    def _write_pages(self, pages):
        """Writes held pages to the backing file, in runs of consecutive pages."""
        i = 0
        while i < len(pages):
            j = i
            while j + 1 < len(pages) and pages[j + 1] == pages[j] + 1 and j - i < 255:
                j += 1
            run = [self.pending[p] for p in pages[i : j + 1]]
            start = pages[i] * PAGE
            if all(c is None for c in run):
                punch_hole(self.fd, start, len(run) * PAGE)
            else:
                blob = b"".join(bytes(PAGE) if c is None else c for c in run)
                os.pwrite(self.fd, blob[: max(0, min(len(blob), self.size - start))], start)
            i = j + 1

    def cut(self, keep_fraction, seed):
        """The power cut: keeps a random `keep_fraction` of the held pages, drops the rest."""
        pages = sorted(self.pending)
        kept = sorted(random.Random(seed).sample(pages, int(len(pages) * keep_fraction)))
        self._write_pages(kept)
        return len(pages), len(kept)


def punch_hole(fd, offset, length):
    """Deallocates a range (reads as zeros); writes zeros where the file system cannot."""
    libc = ctypes.CDLL(None, use_errno=True)
    rc = libc.fallocate(
        fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, ctypes.c_int64(offset), ctypes.c_int64(length)
    )
    if rc != 0:
        os.pwrite(fd, bytes(length), offset)


def recv_exact(conn, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise Disconnected()
        buf += chunk
    return bytes(buf)


def opt_reply(conn, opt, rtype, data=b""):
    conn.sendall(struct.pack(">QIII", OPT_REPLY_MAGIC, opt, rtype, len(data)) + data)


def transmission_flags():
    return TFLAG_HAS_FLAGS | TFLAG_SEND_FLUSH | TFLAG_SEND_FUA | TFLAG_SEND_TRIM


def handshake(conn, disk):
    """Fixed newstyle negotiation; returns once the client entered the transmission phase."""
    conn.sendall(struct.pack(">QQH", NBDMAGIC, IHAVEOPT, FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES))
    (cflags,) = struct.unpack(">I", recv_exact(conn, 4))
    no_zeroes = bool(cflags & FLAG_NO_ZEROES)
    while True:
        magic, opt, length = struct.unpack(">QII", recv_exact(conn, 16))
        if magic != IHAVEOPT or length > 65536:
            raise Disconnected()
        data = recv_exact(conn, length)
        if opt == OPT_EXPORT_NAME:
            reply = struct.pack(">QH", disk.size, transmission_flags())
            conn.sendall(reply if no_zeroes else reply + bytes(124))
            return
        if opt == OPT_ABORT:
            opt_reply(conn, opt, REP_ACK)
            raise Disconnected()
        if opt in (OPT_INFO, OPT_GO):
            if len(data) < 6:
                opt_reply(conn, opt, REP_ERR_INVALID)
                continue
            opt_reply(conn, opt, REP_INFO, struct.pack(">HQH", INFO_EXPORT, disk.size, transmission_flags()))
            opt_reply(conn, opt, REP_INFO, struct.pack(">HIII", INFO_BLOCK_SIZE, 1, PAGE, MAX_REQUEST))
            opt_reply(conn, opt, REP_ACK)
            if opt == OPT_GO:
                return
            continue
        opt_reply(conn, opt, REP_ERR_UNSUP)


def reply(conn, handle, error, data=b""):
    conn.sendall(struct.pack(">IIQ", SIMPLE_REPLY_MAGIC, error, handle) + data)


def serve(conn, disk, after_plain_write):
    """Transmission phase; returns True after a clean NBD_CMD_DISC."""
    while True:
        magic, flags, cmd, handle, offset, length = struct.unpack(">IHHQQI", recv_exact(conn, 28))
        if magic != REQUEST_MAGIC:
            raise Disconnected()
        fua = bool(flags & CMD_FLAG_FUA)
        in_range = offset + length <= disk.size
        if cmd == CMD_WRITE:
            if length > MAX_REQUEST:
                raise Disconnected()
            data = recv_exact(conn, length)
            if not in_range:
                reply(conn, handle, ENOSPC)
                continue
            disk.write(offset, data, fua)
            reply(conn, handle, 0)
            if not fua:
                after_plain_write()
        elif cmd == CMD_READ:
            if not in_range or length > MAX_REQUEST:
                reply(conn, handle, EINVAL)
                continue
            reply(conn, handle, 0, disk.read(offset, length))
        elif cmd == CMD_FLUSH:
            disk.flush()
            reply(conn, handle, 0)
        elif cmd == CMD_TRIM:
            if not in_range:
                reply(conn, handle, EINVAL)
                continue
            disk.trim(offset, length, fua)
            reply(conn, handle, 0)
        elif cmd == CMD_DISC:
            return True
        else:
            reply(conn, handle, EINVAL)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("backing")
    ap.add_argument("socket")
    control = ap.add_mutually_exclusive_group()
    control.add_argument("--write-through", action="store_true")
    control.add_argument("--ignore-flushes", action="store_true")
    ap.add_argument("--cut-keep", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not 0.0 <= args.cut_keep <= 1.0:
        ap.error("--cut-keep is a fraction between 0 and 1")
    try:
        disk = FlushDisk(args.backing, args.write_through, args.ignore_flushes)
    except OSError as e:
        ap.error(f"cannot open {args.backing}: {e}")

    def power_cut(why):
        held, kept = disk.cut(args.cut_keep, args.seed)
        print(f"flushnbd: power cut ({why}): {held} unflushed pages ({held * PAGE} bytes) held, "
              f"{kept} kept, {held - kept} dropped; {disk.flushes} flushes served", flush=True)
        os._exit(0)

    signal.signal(signal.SIGUSR1, lambda _sig, _frame: power_cut("SIGUSR1"))
    armed = {"writes": 0, "n": 0}

    def arm(_sig, _frame):
        armed["n"] = armed["writes"] = random.Random(args.seed).randint(1, 16)

    def after_plain_write():
        if armed["writes"]:
            armed["writes"] -= 1
            if not armed["writes"]:
                power_cut(f"armed by SIGUSR2, {armed['n']} plain writes later")

    signal.signal(signal.SIGUSR2, arm)
    if os.path.exists(args.socket):
        os.unlink(args.socket)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(args.socket)
    srv.listen(1)
    print(f"flushnbd: serving {args.backing} ({disk.size} bytes) on {args.socket}", flush=True)
    conn, _ = srv.accept()
    srv.close()
    clean = False
    try:
        handshake(conn, disk)
        clean = serve(conn, disk, after_plain_write)
    except (Disconnected, ConnectionError):
        pass
    except OSError as e:
        print(f"flushnbd: I/O error on {args.backing}: {e}", file=sys.stderr, flush=True)
    if not clean:
        power_cut("the client vanished without NBD_CMD_DISC")
    print(f"flushnbd: client left with NBD_CMD_DISC; {len(disk.pending)} unflushed pages dropped; "
          f"{disk.flushes} flushes served", flush=True)


if __name__ == "__main__":
    main()
