"""Jinja filters for the poshub playbooks: reading the supervisor's /slots and /update/status
documents and the hub's /health, and building one fleet-report row per box.

Field names are those of the update API, docs/updates.md section 6 (supervisor/src/api,
supervisor/src/status.rs) and of the hub's /health (hub/src/net/http.rs).
"""

import datetime
import re


def os_version(doc):
    """`osVersion` of /slots or of the hub's /health: the running bundle version."""
    if not isinstance(doc, dict) or not doc.get("osVersion"):
        return None
    return str(doc["osVersion"])


def up_to_date(slots, version):
    """True when the box is committed on `version`: booted = default, slot good, no trial."""
    if not isinstance(slots, dict) or slots.get("trial"):
        return False
    booted = slots.get("booted")
    cur = (slots.get("slots") or {}).get(booted) or {}
    return (booted is not None and booted == slots.get("default") and cur.get("state") == "good"
            and cur.get("version") == version)


# What a supervisor that does not report `bundleFormats` in /slots reads: the field came with
# format 4, so such a supervisor is older and reads formats 1 to 3.
FORMATS_WITHOUT_FIELD = (1, 2, 3)


def bundle_formats(slots):
    """The bundle formats the box's supervisor installs: `bundleFormats` of its /slots, else
    (an older supervisor, or a document without a usable list) formats 1 to 3."""
    got = slots.get("bundleFormats") if isinstance(slots, dict) else None
    if isinstance(got, list) and got and all(isinstance(f, int) and not isinstance(f, bool) for f in got):
        return tuple(got)
    return FORMATS_WITHOUT_FIELD


def _on_base(cur, manifest):
    """True when the booted slot `cur` holds the delta's base: its `sha256` equals the delta's
    `delta_base_sha256`, or, when the box has no hash recorded for it, its `version` equals
    `delta_base_version`."""
    if cur.get("sha256"):
        return cur["sha256"] == manifest.get("delta_base_sha256")
    return bool(cur.get("version")) and cur.get("version") == manifest.get("delta_base_version")


def pick_bundle(slots, full, deltas=()):
    """{kind, path, size, skipped} of what to send to a box: the first delta whose base is the
    booted slot's content (see _on_base) and whose manifest `format` the box's supervisor
    installs (bundle_formats), else the full bundle. `skipped` says why a delta on the box's
    base was not sent (its format), else is empty. `full` and each delta are
    poshub_bundle_info results (path, size, manifest)."""
    booted = (slots or {}).get("booted") if isinstance(slots, dict) else None
    cur = ((slots or {}).get("slots") or {}).get(booted) or {} if booted else {}
    formats = bundle_formats(slots)
    skipped = ""
    for d in deltas or ():
        m = d.get("manifest") or {}
        if not _on_base(cur, m):
            continue
        if m.get("format") in formats:
            return {"kind": "delta", "path": d.get("path"), "size": d.get("size"), "skipped": ""}
        skipped = skipped or "the box reads bundle formats %s, not the delta's format %s" % (
            ", ".join(str(f) for f in formats), m.get("format"))
    return {"kind": "full", "path": full.get("path"), "size": full.get("size"), "skipped": skipped}


def _when(ts):
    if not isinstance(ts, (int, float)) or ts <= 0:
        return None
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def journal_lines(slots, count=12):
    """The last `count` journal entries of /slots as readable lines (the boot-attempt journal)."""
    j = (slots or {}).get("journal") if isinstance(slots, dict) else None
    return ["%s slot %s %s: %s" % (_when(e.get("at")), e.get("slot"), e.get("event"), e.get("detail"))
            for e in (j or [])[-count:]]


def _installed_version(journal, index, slot):
    """The version the journal says was installed into `slot` before entry `index`."""
    for e in reversed(journal[:index]):
        if e.get("slot") == slot and e.get("event") in ("install", "install-start"):
            m = re.search(r"version (\S+)", e.get("detail") or "")
            if m:
                return m.group(1)
    return None


def _journal_rollback(slots):
    """{at, slot, version, reason} of the latest `mark-bad` entry of the /slots journal, or None.
    The version is the one the journal says was installed there (the slot may hold a newer one
    since), else the slot's own while it is still bad."""
    store = slots.get("slots") or {}
    journal = slots.get("journal") or []
    for i in range(len(journal) - 1, -1, -1):
        e = journal[i]
        if e.get("event") == "mark-bad":
            info = store.get(e.get("slot")) or {}
            version = _installed_version(journal, i, e.get("slot"))
            if version is None and info.get("state") == "bad":
                version = info.get("version")
            return {"at": _when(e.get("at")), "slot": e.get("slot"), "version": version,
                    "reason": e.get("detail")}
    return None


def last_rollback(slots, status=None):
    """{at, slot, version, reason} of the box's last rollback, or None.

    The `outcome` of /update/status when the last update was rolled back; otherwise (a later
    update was installed since, or the rollback was not of an update) the latest slot marked
    bad in the /slots journal (its last 20 entries), else a slot still `bad` with its reason."""
    o = (status or {}).get("outcome") if isinstance(status, dict) else None
    if isinstance(o, dict) and o.get("state") == "rolled-back":
        return {"at": _when(o.get("at")), "slot": o.get("slot"), "version": o.get("version"),
                "reason": o.get("reason")}
    if not isinstance(slots, dict):
        return None
    found = _journal_rollback(slots)
    if found:
        return found
    for name, info in sorted((slots.get("slots") or {}).items()):
        if (info or {}).get("state") == "bad":
            return {"at": None, "slot": name, "version": info.get("version"), "reason": info.get("reason")}
    return None


def report_row(host, slots_res, health_res, status_res, channel=None, sent=None):
    """One row of the fleet report from the three registered poshub_api results and the
    controller's record of the last bundle update.yml sent to the box (`sent`: {version, kind,
    bytes, bundle, at}, or None)."""
    slots = slots_res.get("json") if slots_res.get("reachable") else None
    health = health_res.get("json") if health_res.get("reachable") else None
    status = status_res.get("json") if status_res.get("reachable") else None
    store = (slots or {}).get("slots") or {}
    health = health if isinstance(health, dict) else {}

    def slot(name):
        s = store.get(name) or {}
        return {"state": s.get("state"), "version": s.get("version"), "reason": s.get("reason")}

    return {
        "host": host,
        "channel": channel,
        "reachable": bool(slots_res.get("reachable")),
        "error": None if slots_res.get("reachable") else slots_res.get("error") or slots_res.get("msg"),
        "version": os_version(slots),
        "booted": (slots or {}).get("booted"),
        "default": (slots or {}).get("default"),
        "trial": (slots or {}).get("trial"),
        "slotA": slot("A"),
        "slotB": slot("B"),
        "lastRollback": last_rollback(slots, status),
        "sent": sent if isinstance(sent, dict) and sent.get("kind") else None,
        "update": {"state": (status or {}).get("state"), "error": (status or {}).get("error"),
                   "outcome": (status or {}).get("outcome")},
        "hub": {
            "reachable": bool(health_res.get("reachable")),
            "status": health.get("status"),
            "healthy": health.get("status") == "ok",
            "version": health.get("version"),
            "osVersion": os_version(health),
            "terminals": health.get("terminals"),
            "pendingEvents": health.get("pendingEvents"),
            "deadLetters": health.get("deadLetters"),
            "uptimeS": health.get("uptimeS"),
        },
    }


class FilterModule:
    """poshub_* filters."""

    def filters(self):
        return {
            "poshub_os_version": os_version,
            "poshub_up_to_date": up_to_date,
            "poshub_pick_bundle": pick_bundle,
            "poshub_journal_lines": journal_lines,
            "poshub_last_rollback": last_rollback,
            "poshub_report_row": report_row,
        }
