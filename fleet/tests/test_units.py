#!/usr/bin/env python3
"""Unit tests of the fleet's Python pieces (run with the venv's python, which has ansible-core):
the trial classification of poshub_wait, the report filters, the bundle manifest reader and the
Tailscale inventory, on documents recorded from real supervisors and hubs (fixtures/, written by
`test_fleet.py --record fleet/tests/fixtures`). Fast; the playbooks themselves are tested against a
simulated fleet by test_fleet.py.
"""

import copy
import importlib.util
import json
import os
import struct
import sys
import tempfile
import unittest

FLEET = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(name, rel):
    spec = importlib.util.spec_from_file_location(name, os.path.join(FLEET, rel))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


http = load("ansible.module_utils.poshub_http", "module_utils/poshub_http.py")
wait = load("poshub_wait", "library/poshub_wait.py")
info = load("poshub_bundle_info", "library/poshub_bundle_info.py")
filters = load("poshub_filters", "filter_plugins/poshub.py")
inv = load("tailscale_inventory", "inventory/tailscale.py")


FIXTURES = os.path.join(FLEET, "tests", "fixtures")


def fixture(label, kind):
    """A real document recorded from the simulated fleet by `test_fleet.py --record
    fleet/tests/fixtures`: `label` is committed (box03 after the good bundle), rolled-back (the
    canary after the bundle whose hub fails its health window) or committed-after-rollback (the
    canary on the next good bundle); `kind` is slots, update-status or health."""
    with open(os.path.join(FIXTURES, "%s.%s.json" % (label, kind)), encoding="utf-8") as f:
        return json.load(f)


def with_outcome(status, **changes):
    st = copy.deepcopy(status)
    st["outcome"].update(changes)
    return st


class Classify(unittest.TestCase):
    def setUp(self):
        self.st = fixture("committed", "update-status")
        self.slots = fixture("committed", "slots")
        self.version = self.st["outcome"]["version"]

    def test_recorded_commit(self):
        self.assertEqual(self.st["outcome"]["state"], "committed")
        self.assertEqual(wait.classify(self.st, self.slots, self.version), ("committed", ""))

    def test_armed_or_trying_is_pending(self):
        for state in ("armed", "trying"):
            self.assertIsNone(wait.classify(with_outcome(self.st, state=state), self.slots, self.version))

    def test_no_outcome_or_another_version_is_pending(self):
        self.assertIsNone(wait.classify(dict(self.st, outcome=None), self.slots, self.version))
        self.assertIsNone(wait.classify(self.st, self.slots, "9.9.9"))

    def test_store_committed_but_bootloader_default_not_yet_is_pending(self):
        # The supervisor commits the slot store, then the bootloader: seen in the fleet test.
        other = "A" if self.slots["default"] == "B" else "B"
        self.assertIsNone(wait.classify(self.st, dict(self.slots, default=other), self.version))
        self.assertIsNone(wait.classify(self.st, None, self.version))

    def test_recorded_rollback_with_the_supervisor_reason(self):
        st = fixture("rolled-back", "update-status")
        o = st["outcome"]
        self.assertEqual((st["state"], o["state"]), ("rolled-back", "rolled-back"))
        self.assertIn("health", o["reason"])
        outcome, reason = wait.classify(st, fixture("rolled-back", "slots"), o["version"])
        self.assertEqual(outcome, "rolled_back")
        self.assertEqual(reason, o["reason"])


class Filters(unittest.TestCase):
    def test_up_to_date(self):
        doc = fixture("committed", "slots")
        v = doc["osVersion"]
        self.assertTrue(filters.up_to_date(doc, v))
        self.assertFalse(filters.up_to_date(doc, v + ".1"))
        self.assertFalse(filters.up_to_date(dict(doc, trial={"slot": doc["booted"]}), v))
        self.assertFalse(filters.up_to_date(None, v))

    def test_os_version_of_slots_and_health(self):
        slots_doc, health = fixture("committed", "slots"), fixture("committed", "health")
        booted = slots_doc["slots"][slots_doc["booted"]]["version"]
        self.assertEqual(filters.os_version(slots_doc), booted)
        self.assertEqual(filters.os_version(health), booted)
        self.assertNotEqual(health["version"], booted)  # the hub binary's own version is not it
        self.assertIsNone(filters.os_version({"osVersion": None}))

    def test_last_rollback_from_the_outcome(self):
        st = fixture("rolled-back", "update-status")
        r = filters.last_rollback(fixture("rolled-back", "slots"), st)
        o = st["outcome"]
        self.assertEqual((r["slot"], r["version"], r["reason"]), (o["slot"], o["version"], o["reason"]))
        self.assertRegex(r["at"], r"^20\d\d-\d\d-\d\dT")

    def test_last_rollback_after_a_later_commit_comes_from_the_journal(self):
        rb = fixture("rolled-back", "update-status")["outcome"]
        st = fixture("committed-after-rollback", "update-status")
        self.assertEqual(st["outcome"]["state"], "committed")
        r = filters.last_rollback(fixture("committed-after-rollback", "slots"), st)
        self.assertEqual((r["slot"], r["version"], r["reason"]), (rb["slot"], rb["version"], rb["reason"]))

    def test_no_rollback(self):
        self.assertIsNone(filters.last_rollback(fixture("committed", "slots"), fixture("committed", "update-status")))

    def test_pick_bundle_by_the_booted_slots_hash_then_version(self):
        doc = fixture("committed", "slots")  # booted B: 1.1.0 with its sha256; A: 1.0.0, no hash
        b = doc["slots"]["B"]
        full = {"path": "full", "size": 9, "manifest": {"version": "1.2.0"}}

        def delta(sha, version, path="d"):
            return {"path": path, "size": 1,
                    "manifest": {"format": 3, "delta_base_sha256": sha, "delta_base_version": version}}
        self.assertEqual(doc["booted"], "B")
        pick = filters.pick_bundle
        self.assertEqual(pick(doc, full, [delta(b["sha256"], "x")])["kind"], "delta")
        self.assertEqual(pick(doc, full, [delta("0" * 64, "1.1.0")])["kind"], "full")  # hash wins
        self.assertEqual(pick(doc, full, [delta("0" * 64, "1.0.0"), delta(b["sha256"], "1.1.0", "d2")])["path"], "d2")
        self.assertEqual(pick(doc, full, []), {"kind": "full", "path": "full", "size": 9, "skipped": ""})
        no_hash = copy.deepcopy(doc)
        no_hash["booted"] = "A"
        self.assertEqual(pick(no_hash, full, [delta("0" * 64, "1.0.0")])["kind"], "delta")  # no hash: version
        self.assertEqual(pick(no_hash, full, [delta("0" * 64, "1.1.0")])["kind"], "full")
        self.assertEqual(pick(None, full, [delta(b["sha256"], "1.1.0")])["kind"], "full")

    def test_pick_bundle_by_the_formats_the_box_reads(self):
        doc = fixture("committed", "slots")
        doc.pop("bundleFormats", None)  # as an older supervisor answers (and the fixture was recorded)
        sha = doc["slots"][doc["booted"]]["sha256"]
        full = {"path": "full", "size": 9, "manifest": {"version": "1.2.0"}}

        def delta(fmt, path):
            return {"path": path, "size": 1, "manifest": {"format": fmt, "delta_base_sha256": sha}}
        pick = filters.pick_bundle
        self.assertEqual(filters.bundle_formats(doc), (1, 2, 3))
        # An older supervisor (no field) gets the full bundle instead of a format 4 delta, and why.
        got = pick(doc, full, [delta(4, "d4")])
        self.assertEqual((got["kind"], got["path"]), ("full", "full"))
        self.assertEqual(got["skipped"], "the box reads bundle formats 1, 2, 3, not the delta's format 4")
        # ... but a format 3 delta on its base, even listed after the format 4 one.
        got = pick(doc, full, [delta(4, "d4"), delta(3, "d3")])
        self.assertEqual((got["kind"], got["path"], got["skipped"]), ("delta", "d3", ""))
        new = dict(doc, bundleFormats=[1, 2, 3, 4])
        self.assertEqual(pick(new, full, [delta(4, "d4")])["path"], "d4")
        self.assertEqual(pick(dict(doc, bundleFormats=[1, 2]), full, [delta(3, "d3")])["kind"], "full")
        # A delta of another base is not "skipped": the box just does not run its base.
        other = {"path": "o", "size": 1, "manifest": {"format": 4, "delta_base_sha256": "0" * 64}}
        self.assertEqual(pick(new, full, [other])["skipped"], "")
        for junk in ("1-4", [], [True, 4], ["4"], None, {"4": 1}):
            self.assertEqual(filters.bundle_formats(dict(doc, bundleFormats=junk)), (1, 2, 3), junk)
            self.assertEqual(pick(dict(doc, bundleFormats=junk), full, [delta(4, "d4")])["kind"], "full")

    def test_recorded_row(self):
        ok = lambda label, kind: {"reachable": True, "json": fixture(label, kind)}  # noqa: E731
        row = filters.report_row("box01", ok("committed-after-rollback", "slots"),
                                 ok("committed-after-rollback", "health"),
                                 ok("committed-after-rollback", "update-status"), "canary")
        slots_doc = fixture("committed-after-rollback", "slots")
        self.assertEqual(row["version"], slots_doc["osVersion"])
        self.assertEqual(row["hub"]["osVersion"], slots_doc["osVersion"])
        self.assertTrue(row["hub"]["healthy"])
        self.assertEqual(row["update"]["state"], "committed")
        self.assertIn("health", row["lastRollback"]["reason"])

    def test_row_of_an_unreachable_box(self):
        down = {"reachable": False, "error": "no route"}
        row = filters.report_row("box9", down, down, down, "stable")
        self.assertEqual((row["reachable"], row["error"], row["version"], row["hub"]["healthy"],
                          row["lastRollback"]), (False, "no route", None, False, None))


class Bundle(unittest.TestCase):
    def test_manifest_and_refusals(self):
        with tempfile.TemporaryDirectory() as d:
            good = os.path.join(d, "b.poshub")
            m = json.dumps({"version": "1.4.0", "format": 1}).encode()
            with open(good, "wb") as f:
                f.write(b"POSHUBB1" + struct.pack("<I", len(m)) + m + bytes(64))
            self.assertEqual(info.read_manifest(good)["version"], "1.4.0")
            bad = os.path.join(d, "x.poshub")
            with open(bad, "wb") as f:
                f.write(b"NOTABUNDLE")
            with self.assertRaisesRegex(ValueError, "not a poshub bundle"):
                info.read_manifest(bad)
            with open(bad, "wb") as f:
                f.write(b"POSHUBB1" + struct.pack("<I", 100) + b"{}")
            with self.assertRaisesRegex(ValueError, "truncated"):
                info.read_manifest(bad)


class Inventory(unittest.TestCase):
    def test_recorded_status_keeps_tagged_peers(self):
        with open(os.path.join(FLEET, "tests", "tailscale-status.json"), encoding="utf-8") as f:
            got = inv.inventory(json.load(f), "tag:poshub", "tag:poshub-canary")
        self.assertEqual(got["canary"]["hosts"], ["poshub-lab-01"])
        self.assertEqual(got["stable"]["hosts"], ["poshub-store-01", "poshub-store-02"])
        hv = got["_meta"]["hostvars"]
        self.assertEqual(hv["poshub-store-01"]["ansible_host"], "100.101.2.21")
        self.assertFalse(hv["poshub-store-02"]["tailscale_online"])
        self.assertNotIn("manager-phone", hv)


if __name__ == "__main__":
    unittest.main(verbosity=1)
