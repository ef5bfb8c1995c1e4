#!/usr/bin/env python3
"""Plain-WebSocket terminals against a hub, as scripts/qemu-e2e and scripts/qemu-powercut use them.

    terminal.py sync WS_URL HTTP_URL TOKEN_A TOKEN_B POS_REFERENCE
    terminal.py write WS_URL TOKEN TERMINAL_ID PREFIX N
    terminal.py check HTTP_URL ACKED_FILE...

Terminal B connects and authenticates first; terminal A leases POS_REFERENCE, writes a
snapshot on top of the version the hub has (GET HTTP_URL/orders/REF; 404 = new order) and
waits for ORDER_ACK;
B must then receive the ORDER_UPDATED with that version. Prints one line with the version
and how long B waited after A's ack; exits non-zero with the reason otherwise. Every wait
is bounded (10 s).

`write`: one terminal writes the new orders PREFIX-00001 ... PREFIX-N one after the other
(lease, snapshot, ORDER_ACK, release) and prints `acked REF VERSION` for each as soon as the
hub acknowledged it (line-buffered: a power cut in the middle leaves exactly the acknowledged
ones). Exits 0 after N, 3 when the connection dies (the expected end at a power cut).
`check`: every order in the `acked` lines of ACKED_FILEs must be there (GET /orders/REF) with
at least the acknowledged version; prints the count and every missing one, exits 1 if any is.
Needs python3-websockets (Debian).
"""

import asyncio
import concurrent.futures
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import websockets

TIMEOUT = 10.0


async def recv_until(ws, want, what):
    """Reads frames until `want(msg)` is true; fails on ERROR/AUTH_FAIL or the deadline."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SystemExit(f"timeout waiting for {what}")
        msg = json.loads(await asyncio.wait_for(ws.recv(), left))
        if msg.get("type") in ("ERROR", "AUTH_FAIL"):
            raise SystemExit(f"hub answered {msg} while waiting for {what}")
        if want(msg):
            return msg


async def auth(url, token, terminal):
    ws = await websockets.connect(url, open_timeout=TIMEOUT)
    await ws.send(json.dumps({"type": "AUTH", "token": token, "terminalId": terminal}))
    ok = await recv_until(ws, lambda m: m.get("type") == "AUTH_OK", f"AUTH_OK for {terminal}")
    return ws, ok


def stored_version(http, ref):
    """The version the hub has stored for `ref`, 0 when it does not know the order."""
    try:
        with urllib.request.urlopen(f"{http}/orders/{urllib.parse.quote(ref, safe='')}", timeout=TIMEOUT) as r:
            return int(json.load(r)["version"])
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return 0
        raise


async def write_snapshot(ws, ref, base):
    """Sends a one-line draft of `ref` on top of version `base`; returns the ORDER_ACK."""
    quantity = base + 1
    snapshot = {
        "posReference": ref,
        "state": "draft",
        "tableId": 4,
        "lines": [{"id": "l1", "productId": 12, "quantity": quantity, "unitPrice": 3.5, "taxIds": [1]}],
        "totals": {"subtotal": 3.5 * quantity, "tax": 0, "total": 3.5 * quantity},
        "paymentLines": [],
    }
    await ws.send(
        json.dumps(
            {
                "type": "ORDER_SNAPSHOT",
                "posReference": ref,
                "baseVersion": base,
                "eventId": str(uuid.uuid4()),
                "snapshot": snapshot,
            }
        )
    )
    return await recv_until(ws, lambda m: m.get("type") == "ORDER_ACK", f"ORDER_ACK for {ref}")


async def sync(url, http, token_a, token_b, ref):
    b, _ = await auth(url, token_b, "e2e-till-b")
    a, _ = await auth(url, token_a, "e2e-till-a")
    await a.send(json.dumps({"type": "LEASE_ACQUIRE", "posReference": ref, "requestId": "l"}))
    await recv_until(a, lambda m: m.get("type") == "LEASE_GRANTED", "LEASE_GRANTED")
    base = stored_version(http, ref)
    ack = await write_snapshot(a, ref, base)
    acked = time.monotonic()
    upd = await recv_until(
        b,
        lambda m: m.get("type") == "ORDER_UPDATED"
        and m.get("posReference") == ref
        and m.get("version") == ack["version"],
        "ORDER_UPDATED at terminal B",
    )
    waited_ms = (time.monotonic() - acked) * 1000
    print(f"synced {ref}: version {ack['version']} seq {upd['seq']}, at terminal B {waited_ms:.1f} ms after the ack")
    await a.close()
    await b.close()


async def write(url, token, terminal, prefix, count):
    """`write` mode: new orders one after the other, each acknowledged one printed at once."""
    try:
        ws, _ = await auth(url, token, terminal)
        for i in range(1, int(count) + 1):
            ref = f"{prefix}-{i:05d}"
            await ws.send(json.dumps({"type": "LEASE_ACQUIRE", "posReference": ref, "requestId": ref}))
            await recv_until(ws, lambda m: m.get("type") == "LEASE_GRANTED", f"LEASE_GRANTED for {ref}")
            ack = await write_snapshot(ws, ref, 0)
            print(f"acked {ref} {ack['version']}", flush=True)
            await ws.send(json.dumps({"type": "LEASE_RELEASE", "posReference": ref}))
            await recv_until(ws, lambda m: m.get("type") == "LEASE_RELEASED", f"LEASE_RELEASED for {ref}")
        await ws.close()
    except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException) as e:
        print(f"{terminal}: connection ended: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        sys.exit(3)


def check(http, files):
    """`check` mode: every acknowledged order is there with at least its acknowledged version."""
    acked = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            acked += [line.split() for line in f if line.startswith("acked ")]
    # Eight requests at a time: thousands of orders through QEMU's user network.
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        stored = list(pool.map(lambda a: stored_version(http, a[1]), acked))
    missing = [
        f"{ref} (acknowledged version {version}, the hub has {have or 'nothing'})"
        for (_, ref, version), have in zip(acked, stored)
        if have < int(version)
    ]
    print(f"checked {len(acked)} acknowledged orders: {len(acked) - len(missing)} there, {len(missing)} lost")
    for m in missing:
        print(f"  lost: {m}")
    sys.exit(1 if missing else 0)


def main():
    args = sys.argv[1:]
    if len(args) == 6 and args[0] == "sync":
        asyncio.run(sync(*args[1:]))
    elif len(args) == 6 and args[0] == "write":
        asyncio.run(write(*args[1:]))
    elif len(args) >= 3 and args[0] == "check":
        check(args[1], args[2:])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
