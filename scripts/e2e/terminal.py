#!/usr/bin/env python3
"""Two plain-WebSocket terminals against a hub, as scripts/qemu-e2e uses them.

    terminal.py sync WS_URL HTTP_URL TOKEN_A TOKEN_B POS_REFERENCE

Terminal B connects and authenticates first; terminal A leases POS_REFERENCE, writes a
snapshot on top of the version the hub has (GET HTTP_URL/orders/REF; 404 = new order) and
waits for ORDER_ACK;
B must then receive the ORDER_UPDATED with that version. Prints one line with the version
and how long B waited after A's ack; exits non-zero with the reason otherwise. Every wait
is bounded (10 s). Needs python3-websockets (Debian).
"""

import asyncio
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


async def sync(url, http, token_a, token_b, ref):
    b, _ = await auth(url, token_b, "e2e-till-b")
    a, _ = await auth(url, token_a, "e2e-till-a")
    await a.send(json.dumps({"type": "LEASE_ACQUIRE", "posReference": ref, "requestId": "l"}))
    await recv_until(a, lambda m: m.get("type") == "LEASE_GRANTED", "LEASE_GRANTED")
    base = stored_version(http, ref)
    snapshot = {
        "posReference": ref,
        "state": "draft",
        "tableId": 4,
        "lines": [{"id": "l1", "productId": 12, "quantity": base + 1, "unitPrice": 3.5, "taxIds": [1]}],
        "totals": {"subtotal": 3.5 * (base + 1), "tax": 0, "total": 3.5 * (base + 1)},
        "paymentLines": [],
    }
    await a.send(
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
    ack = await recv_until(a, lambda m: m.get("type") == "ORDER_ACK", "ORDER_ACK")
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


def main():
    if len(sys.argv) != 7 or sys.argv[1] != "sync":
        raise SystemExit(__doc__)
    asyncio.run(sync(*sys.argv[2:7]))


if __name__ == "__main__":
    main()
