"""Jinja filters for the poshub playbooks: reading the supervisor's /slots document and the
hub's /health, and building one fleet-report row per box.

Written against the update API as documented in docs/updates.md §6, tolerant of fields newer
supervisors add (the OS version in /slots and /health, the trial outcome in /update/status).
"""

import datetime
import re

OS_VERSION_KEYS = ("osVersion", "os_version", "bundleVersion")


def _os_version_of(doc):
    if not isinstance(doc, dict):
        return None
    for k in OS_VERSION_KEYS:
        if doc.get(k):
            return str(doc[k])
    os_ = doc.get("os")
    if isinstance(os_, dict) and os_.get("version"):
        return str(os_["version"])
    return None


def booted_version(slots):
    """The version of the booted slot: the supervisor's own OS version field when it reports
    one, else the slot store's version of the booted slot."""
    if not isinstance(slots, dict):
        return None
    v = _os_version_of(slots)
    if v:
        return v
    return ((slots.get("slots") or {}).get(slots.get("booted")) or {}).get("version")


def up_to_date(slots, version):
    """True when the box is committed on `version`: booted = default, slot good, no trial."""
    if not isinstance(slots, dict) or slots.get("trial"):
        return False
    booted = slots.get("booted")
    cur = (slots.get("slots") or {}).get(booted) or {}
    return (booted is not None and booted == slots.get("default") and cur.get("state") == "good"
            and cur.get("version") == version)


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


def last_rollback(slots):
    """{at, slot, version, reason} of the latest slot marked bad, or None. The version is the
    one the journal says was installed there (the slot may hold a newer one since)."""
    if not isinstance(slots, dict):
        return None
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
    for name, info in sorted(store.items()):
        if (info or {}).get("state") == "bad":
            return {"at": None, "slot": name, "version": info.get("version"), "reason": info.get("reason")}
    return None


def report_row(host, slots_res, health_res, status_res, channel=None):
    """One row of the fleet report from the three registered poshub_api results."""
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
        "version": booted_version(slots),
        "booted": (slots or {}).get("booted"),
        "default": (slots or {}).get("default"),
        "trial": (slots or {}).get("trial"),
        "slotA": slot("A"),
        "slotB": slot("B"),
        "lastRollback": last_rollback(slots),
        "update": {"state": (status or {}).get("state"), "error": (status or {}).get("error"),
                   "outcome": (status or {}).get("outcome")},
        "hub": {
            "reachable": bool(health_res.get("reachable")),
            "status": health.get("status"),
            "healthy": health.get("status") == "ok",
            "version": health.get("version"),
            "osVersion": _os_version_of(health),
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
            "poshub_booted_version": booted_version,
            "poshub_up_to_date": up_to_date,
            "poshub_journal_lines": journal_lines,
            "poshub_last_rollback": last_rollback,
            "poshub_report_row": report_row,
        }
