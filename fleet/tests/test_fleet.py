#!/usr/bin/env python3
"""The fleet playbooks against a simulated fleet (fleet_sim.py): real ansible-playbook in its
own network namespace, real poshub-supervisor + poshub in one namespace per box.

    sudo fleet/tests/test_fleet.py --ansible-bin VENV/bin [--boxes 12] [--bin-dir target/debug]

Scenarios, in this order (each builds on the fleet state the previous one left):
  good_bundle_in_waves, rerun_uploads_nothing, refused_bundle_stops_the_run,
  unhealthy_bundle_rolls_back_the_canary_only,
  box_that_stops_answering_stops_the_run, report_lists_every_box, readme_operator_day,
  delta_to_boxes_on_its_base, refused_delta_falls_back_to_full, format4_delta_only_to_boxes_that_read_it.
Prints one PASS line per scenario (with its wall time) and the figures for docs/benchmarks.md;
exits 1 at the first failure, with the playbook output.
"""

import argparse
import json
import os
import re
import shutil
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fleet_sim import Fleet  # noqa: E402

FLEET_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Failed(Exception):
    pass


def check(cond, msg, output=None):
    if not cond:
        if output is not None:
            msg += "\n--- playbook output ---\n" + output[-12000:]
        raise Failed(msg)


def waves(n, spec=(1, 0.10, 1.0)):
    """Ansible's batches for serial [1, '10%', '100%'] on n hosts."""
    out, i = [], 0
    for s in spec:
        size = s if isinstance(s, int) else max(1, int(n * s))
        if i >= n:
            break
        out.append(list(range(i, min(n, i + size))))
        i += size
    if i < n:
        out.append(list(range(i, n)))
    return out


class Watcher(threading.Thread):
    """Polls every box's disk every 20 ms during a run: when a box's upload spool first changes,
    records which boxes were committed on `version` at that moment; calls `on_reboot(box)` when a
    box's bootloader first sees a reboot request."""

    def __init__(self, fleet, version, on_reboot=None):
        super().__init__(daemon=True)
        self.fleet, self.version, self.on_reboot = fleet, version, on_reboot
        self.base = {b.name: b.spool_mtime() for b in fleet.boxes}
        self.reboots = {b.name: fleet.boot_state(b).get("reboot_requests", 0) for b in fleet.boxes}
        self.first_byte = {}
        self.stop = threading.Event()

    def run(self):
        end = time.monotonic() + 900
        while not self.stop.is_set() and time.monotonic() < end:
            for b in self.fleet.boxes:
                if b.name not in self.first_byte and b.spool_mtime() != self.base[b.name]:
                    done = {x.name for x in self.fleet.boxes if x.committed_on(self.version)}
                    self.first_byte[b.name] = (time.monotonic(), done)
                rr = self.fleet.boot_state(b).get("reboot_requests", 0)
                if rr != self.reboots[b.name]:
                    self.reboots[b.name] = rr
                    if self.on_reboot:
                        self.on_reboot(b)
            time.sleep(0.02)


class Suite:
    def __init__(self, args):
        self.args = args
        self.fleet = Fleet(args.boxes, os.path.join(args.bin_dir, "poshub-supervisor"),
                           os.path.join(args.bin_dir, "poshub"))
        self.figures = {}
        self.inv = None

    def env(self, **extra):
        e = dict(os.environ)
        e.update(ANSIBLE_CONFIG=os.path.join(FLEET_DIR, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                 POSHUB_API_TOKEN=self.fleet.token, ANSIBLE_INVENTORY=self.inv,
                 POSHUB_REPORT_DIR=os.path.join(self.fleet.dir, "reports"),
                 PATH=self.args.ansible_bin + os.pathsep + e.get("PATH", ""))
        e.update(extra)
        return e

    def playbook(self, *argv, timeout=600):
        cmd = [os.path.join(self.args.ansible_bin, "ansible-playbook")] + list(argv)
        start = time.monotonic()
        r = self.fleet.controller(cmd, self.env(), FLEET_DIR, timeout)
        out = r.stdout + r.stderr
        if self.fleet.token in out:
            raise Failed("the API token appears in the playbook output")
        return r.returncode, out, time.monotonic() - start

    def record(self, box, label):
        """With --record DIR: saves the box's real /slots, /update/status and hub /health (fetched
        from the controller's namespace) as DIR/LABEL.{slots,update-status,health}.json, the
        fixtures of test_units.py (the documents never carry the token; checked)."""
        if not self.args.record:
            return
        fetch = ("import json,sys,urllib.request as u\n"
                 "r=u.Request(sys.argv[1],headers={'Authorization':'Bearer '+sys.argv[2]})\n"
                 "try:\n  b=u.urlopen(r,timeout=5).read()\n"
                 "except u.HTTPError as e:\n  b=e.read()\n"
                 "print(json.dumps(json.loads(b),indent=1,sort_keys=True))\n")
        for name, url in (("slots", "http://%s:8767/slots" % box.ip),
                          ("update-status", "http://%s:8767/update/status" % box.ip),
                          ("health", "http://%s:8766/health" % box.ip)):
            r = self.fleet.controller(["python3", "-c", fetch, url, self.fleet.token], None, None, 30)
            check(r.returncode == 0, "recording %s of %s: %s" % (name, box.name, r.stderr))
            check(self.fleet.token not in r.stdout, "the token is in %s" % name)
            with open(os.path.join(self.args.record, "%s.%s.json" % (label, name)), "w", encoding="utf-8") as f:
                f.write(r.stdout)

    def footprints(self):
        return {b.name: b.footprint() for b in self.fleet.boxes}

    def report(self, *extra):
        rc, out, _ = self.playbook("status.yml", *extra)
        check(rc == 0, "status.yml failed", out)
        with open(os.path.join(self.fleet.dir, "reports", "fleet-report.json"), encoding="utf-8") as f:
            return {r["host"]: r for r in json.load(f)["boxes"]}, out

    # -- scenarios -------------------------------------------------------------------------

    def good_bundle_in_waves(self):
        f = self.fleet
        bundle = f.bundle("1.1.0")
        wire = {b.name: b.wire_bytes() for b in f.boxes}
        w = Watcher(f, "1.1.0")
        w.start()
        rc, out, wall = self.playbook("update.yml", "-e", "bundle=" + bundle,
                                      "-e", "poshub_update_timeout=60")
        w.stop.set()
        w.join()
        check(rc == 0, "update.yml failed on a good bundle (rc %d)" % rc, out)
        for b in f.boxes:
            check(b.committed_on("1.1.0"), "%s is not committed on 1.1.0: %s" % (b.name, b.slots()), out)
        batches = waves(len(f.boxes))
        for i, batch in enumerate(batches):
            earlier = {f.boxes[j].name for prev in batches[:i] for j in prev}
            for j in batch:
                name = f.boxes[j].name
                check(name in w.first_byte, "no upload seen on %s" % name, out)
                missing = earlier - w.first_byte[name][1]
                check(not missing, "%s (wave %d) received the bundle before %s committed"
                      % (name, i + 1, sorted(missing)), out)
        size = os.path.getsize(bundle)
        to_box = [b.wire_bytes()[0] - wire[b.name][0] for b in f.boxes]
        self.record(f.boxes[2], "committed")
        self.figures["update"] = {"boxes": len(f.boxes), "waves": [len(b) for b in batches],
                                  "wall_s": round(wall, 1), "bundle_bytes": size,
                                  "wire_bytes_to_box_min": min(to_box), "wire_bytes_to_box_max": max(to_box)}
        return "%d boxes committed on 1.1.0 in waves %s, %.1f s; bundle %d bytes, %d-%d bytes on the wire per box" % (
            len(f.boxes), [len(b) for b in batches], wall, size, min(to_box), max(to_box))

    def rerun_uploads_nothing(self):
        f = self.fleet
        before = self.footprints()
        wire = {b.name: b.wire_bytes()[0] for b in f.boxes}
        rc, out, wall = self.playbook("update.yml", "-e", "bundle=" + f.bundle("1.1.0"))
        to_box = max(b.wire_bytes()[0] - wire[b.name] for b in f.boxes)
        check(rc == 0, "rerun failed", out)
        check(before == self.footprints(), "a rerun touched a box: %s -> %s" % (before, self.footprints()), out)
        check(re.search(r"changed=[1-9]", out) is None, "a rerun reported a change", out)
        check(to_box < 100_000, "a rerun sent %d bytes to a box" % to_box, out)
        self.figures["rerun"] = {"wall_s": round(wall, 1), "wire_bytes_to_box_max": to_box}
        return "no box received anything (spools and journals unchanged, at most %d bytes on the wire), %.1f s" % (to_box, wall)

    def refused_bundle_stops_the_run(self):
        f = self.fleet
        bundle = f.bundle("1.1.5", name="poshub-1.1.5-foreign-key", key="foreign")
        before = self.footprints()
        rc, out, wall = self.playbook("update.yml", "-e", "bundle=" + bundle)
        check(rc != 0, "the run did not fail on a bundle signed with a foreign key", out)
        check("FAILED box01: HTTP 400" in out and "signature" in out, "the refusal's reason is not printed", out)
        after = self.footprints()
        check(all(before[b.name] == after[b.name] for b in f.boxes[1:]), "another box received the bundle", out)
        check(f.boxes[0].committed_on("1.1.0"), "the canary left 1.1.0", out)
        return "box01 refused it (HTTP 400, signature), run stopped after %.1f s, nothing sent to the others" % wall

    def unhealthy_bundle_rolls_back_the_canary_only(self):
        f = self.fleet
        bundle = f.bundle("1.2.0", hub_http_port=8799, name="poshub-1.2.0-broken")
        canary, others = f.boxes[0], f.boxes[1:]
        before = {b.name: b.footprint() for b in others}
        running = canary.version()
        rc, out, wall = self.playbook("update.yml", "-e", "bundle=" + bundle,
                                      "-e", "poshub_update_timeout=60")
        check(rc != 0, "the run did not fail on a bundle whose hub never gets healthy", out)
        bad = [s for s in (canary.slots().get(x, {}) for x in "AB") if s.get("version") == "1.2.0"]
        check(bad and bad[0].get("state") == "bad", "canary slot of 1.2.0 is not bad: %s" % canary.slots(), out)
        reason = bad[0].get("reason") or ""
        check(canary.committed_on(running), "the canary is not back on %s" % running, out)
        check("FAILED box01" in out and reason in out, "the output does not name box01 and the reason %r" % reason, out)
        check("trial-boot" in out and "mark-bad" in out, "the canary's journal was not printed", out)
        check(re.search(r"update: rolled-back,\s+trial outcome: \{[^}]*'state': 'rolled-back'", out)
              and "rolled back: " + reason in out,
              "the canary's /update/status outcome (rolled-back, with the reason) was not printed", out)
        self.record(canary, "rolled-back")
        after = {b.name: b.footprint() for b in others}
        check(before == after, "another box received the broken bundle: %s -> %s" % (before, after), out)
        check("box02" not in out, "box02 appears in the run", out)
        return "canary rolled back by itself (%s); run stopped after %.1f s; 11 boxes untouched" % (reason, wall)

    def box_that_stops_answering_stops_the_run(self):
        f = self.fleet
        bundle = f.bundle("1.3.0")
        victim = f.boxes[1]
        later = f.boxes[2:]
        before = {b.name: b.footprint() for b in later}
        cut = []

        def on_reboot(b):
            if b is victim and not cut:
                b.link(False)
                cut.append(time.monotonic())

        w = Watcher(f, "1.3.0", on_reboot)
        w.start()
        rc, out, wall = self.playbook("update.yml", "-e", "bundle=" + bundle,
                                      "-e", "poshub_update_timeout=25")
        w.stop.set()
        w.join()
        check(cut, "box02 never rebooted into its trial", out)
        check(rc != 0, "the run did not fail when box02 stopped answering", out)
        check(f.boxes[0].committed_on("1.3.0"), "the canary did not commit 1.3.0", out)
        check("FAILED box02" in out and "no trial outcome" in out, "the output does not name box02", out)
        after = {b.name: b.footprint() for b in later}
        check(before == after, "a box of the last wave received the bundle", out)
        return "run stopped at box02 (%.1f s); boxes of the last wave untouched" % wall

    def report_lists_every_box(self):
        self.record(self.fleet.boxes[0], "committed-after-rollback")
        rows, out = self.report("-vvv")  # the token must not show even at -vvv (playbook() checks)
        f = self.fleet
        check("poshub_api" in out and "Authorization" not in out, "-vvv output unexpected", out)
        check(sorted(rows) == [b.name for b in f.boxes], "report rows: %s" % sorted(rows), out)
        c = rows["box01"]
        check(c["reachable"] and c["version"] == "1.3.0" and c["channel"] == "canary", "canary row %s" % c)
        check(c["lastRollback"] and c["lastRollback"]["version"] == "1.2.0"
              and "health" in (c["lastRollback"]["reason"] or ""), "canary's rollback: %s" % c["lastRollback"])
        check(c["update"]["state"] == "committed" and c["update"]["outcome"]["version"] == "1.3.0"
              and c["hub"]["osVersion"] == "1.3.0", "canary's update and hub: %s" % c)
        v = rows["box02"]
        check(not v["reachable"] and not v["hub"]["reachable"], "box02 row %s" % v)
        for b in f.boxes[2:]:
            r = rows[b.name]
            check(r["reachable"] and r["version"] == "1.1.0" and r["hub"]["healthy"]
                  and r["booted"] == r["default"] and r["slotA"]["state"] == "good"
                  and r["lastRollback"] is None and r["channel"] == "stable"
                  and r["hub"]["deadLetters"] == 0 and isinstance(r["hub"]["uptimeS"], int)
                  and r["hub"]["osVersion"] == "1.1.0" and r["update"]["outcome"]["state"] == "committed",
                  "row %s" % r)
        d = os.path.join(f.dir, "reports")
        md = open(os.path.join(d, "fleet-report.md"), encoding="utf-8").read()
        html = open(os.path.join(d, "fleet-report.html"), encoding="utf-8").read()
        check(len(re.findall(r"^\| box\d\d \|", md, re.M)) == len(f.boxes) and "health timeout" in md,
              "markdown report:\n" + md)
        check("<html" in html and html.count("<tr class") == len(f.boxes) and "health timeout" in html
              and not re.search(r"<link|<script|src=|href=|@import", html), "html report is not self-contained")
        f.boxes[1].link(True)
        return "%d rows: box01 1.3.0 with its 1.2.0 rollback, box02 unreachable, others 1.1.0" % len(rows)

    def readme_operator_day(self):
        """Every sh block of fleet/README.md, unchanged, in a copy of fleet/ (so the vault file and
        the reports land there), with the effects each step promises."""
        f = self.fleet
        blocks = readme_blocks()
        check(len(blocks) == len(README_STEPS) and all(re.search(p, b, re.M) for p, b in zip(README_STEPS, blocks)),
              "README sh blocks are not the operator's day this test knows: %s" % blocks)
        work = self.readme_work = os.path.join(f.dir, "fleet-copy")
        shutil.copytree(FLEET_DIR, work, ignore=shutil.ignore_patterns("tests", "reports", "vault.yml", "__pycache__"))
        home = os.path.join(f.dir, "home")
        os.makedirs(home)
        with open(os.path.join(home, ".poshub-vault-pass"), "w", encoding="utf-8") as fh:
            fh.write(os.urandom(16).hex() + "\n")
        env = self.env(NEW=f.bundle("1.4.0"), OLD=f.bundle("1.3.0", name="poshub-1.3.0-again"), HOME=home,
                       POSHUB_TAILSCALE_STATUS=os.path.join(FLEET_DIR, "tests", "tailscale-status.json"))
        for k in ("ANSIBLE_CONFIG", "POSHUB_REPORT_DIR"):
            env.pop(k)
        exports = []
        for i, block in enumerate(blocks):
            script = "set -euo pipefail\n" + "\n".join(exports) + "\n" + block
            r = f.controller(["bash", "-c", script], env, work, 900)
            out = r.stdout + r.stderr
            check(r.returncode == 0, "README block %d failed: %s" % (i + 1, block), out)
            check(f.token not in out, "the token appears in the output of: %s" % block)
            exports += [ln for ln in block.splitlines() if ln.startswith(("export ", "unset "))]
            self.readme_step_effect(i, out)
        return "inventory, vault, canary push, report, promotion and rollback as the README says"

    def readme_step_effect(self, i, out):
        """What the operator sees after README step i."""
        f = self.fleet
        if i == 0:
            check(re.search(r"@canary:\n\W*--poshub-lab-01\n\W*--@stable:\n\W*--poshub-store-01\n\W*--poshub-store-02\n", out)
                  and "manager-phone" not in out and "print-server" not in out, "inventory graph:\n" + out)
        elif i == 1:
            vault = open(os.path.join(self.readme_work, "group_vars", "all", "vault.yml"), encoding="utf-8").read()
            check("$ANSIBLE_VAULT" in vault and f.token not in vault, "vault.yml is not encrypted")
        elif i == 2:
            check(f.boxes[0].committed_on("1.4.0") and not any(b.committed_on("1.4.0") for b in f.boxes[1:]),
                  "push to canary: only box01 must be on 1.4.0", out)
        elif i == 3:
            with open(os.path.join(self.readme_work, "reports", "fleet-report.json"), encoding="utf-8") as fh:
                rows = {r["host"]: r for r in json.load(fh)["boxes"]}
            check(rows["box01"]["version"] == "1.4.0" and len(rows) == len(f.boxes)
                  and all(os.path.exists(os.path.join(self.readme_work, "reports", "fleet-report." + x))
                          for x in ("md", "html")), "report after the canary push", out)
        elif i == 4:
            check(all(b.committed_on("1.4.0") for b in f.boxes), "promotion: every box on 1.4.0", out)
            check(re.search(r"PLAY \[Update poshub boxes in waves\]", out) and out.count("PLAY [Update") == 3,
                  "promotion: not 3 waves", out)
        elif i == 5:
            check(f.boxes[0].committed_on("1.3.0") and all(b.committed_on("1.4.0") for b in f.boxes[1:]),
                  "rollback: box01 back on 1.3.0, the others on 1.4.0", out)


    def delta_to_boxes_on_its_base(self):
        """After the README's day box01 runs 1.3.0 and the others 1.4.0: a push of 1.5.0 with a
        delta from 1.4.0 sends the delta to the 11 boxes on 1.4.0 and the full bundle to box01."""
        f = self.fleet
        base = os.path.join(f.dir, "poshub-1.4.0.poshub")
        full = f.bundle("1.5.0", base="1.4.0")
        delta = f.bundle("1.5.0", base="1.4.0", name="poshub-1.5.0-delta-from-1.4.0", delta_from=base)
        full_size, delta_size = os.path.getsize(full), os.path.getsize(delta)
        check(delta_size * 10 < full_size, "the delta (%d bytes) is not much smaller than the full bundle (%d)"
              % (delta_size, full_size))
        odd = f.boxes[0]
        check(odd.committed_on("1.3.0") and all(b.committed_on("1.4.0") for b in f.boxes[1:]),
              "fleet not in the README's end state")
        wire = {b.name: b.wire_bytes()[0] for b in f.boxes}
        rc, out, wall = self.playbook("update.yml", "-e", "bundle=" + full, "-e", "delta=" + delta,
                                      "-e", "poshub_update_timeout=60")
        check(rc == 0, "update.yml with a delta failed (rc %d)" % rc, out)
        to_box = {b.name: b.wire_bytes()[0] - wire[b.name] for b in f.boxes}
        for b in f.boxes:
            check(b.committed_on("1.5.0"), "%s is not committed on 1.5.0: %s" % (b.name, b.slots()), out)
        check(to_box[odd.name] >= full_size, "box01 (on 1.3.0) received %d bytes, less than the full bundle's %d"
              % (to_box[odd.name], full_size), out)
        on_base = [to_box[b.name] for b in f.boxes[1:]]
        check(max(on_base) < delta_size + 200_000, "a box on 1.4.0 received %d bytes (delta %d, full %d)"
              % (max(on_base), delta_size, full_size), out)
        rows, rout = self.report()
        for b in f.boxes:
            kind, size = ("full", full_size) if b is odd else ("delta", delta_size)
            sent = rows[b.name].get("sent") or {}
            check(sent.get("kind") == kind and sent.get("bytes") == size and sent.get("version") == "1.5.0",
                  "%s: report says %s, expected %s of %d bytes" % (b.name, sent, kind, size), rout)
        md = open(os.path.join(f.dir, "reports", "fleet-report.md"), encoding="utf-8").read()
        html = open(os.path.join(f.dir, "reports", "fleet-report.html"), encoding="utf-8").read()
        check(re.search(r"^\| box01 \|.*\| 1\.5\.0: full, %d bytes \|" % full_size, md, re.M)
              and len(re.findall(r"^\| box\d\d \|.*\| 1\.5\.0: delta, %d bytes \|" % delta_size, md, re.M)) == 11
              and html.count("1.5.0: delta, %d bytes" % delta_size) == 11, "report:\n" + md)
        self.figures["delta"] = {"full_bytes": full_size, "delta_bytes": delta_size, "wall_s": round(wall, 1),
                                 "wire_bytes_box01": to_box[odd.name], "wire_bytes_on_base_max": max(on_base)}
        return ("box01 (1.3.0) got the full bundle (%d bytes, %d on the wire), 11 boxes on 1.4.0 the delta "
                "(%d bytes, at most %d on the wire); all committed 1.5.0 in %.1f s; report says which"
                % (full_size, to_box[odd.name], delta_size, max(on_base), wall))

    def refused_delta_falls_back_to_full(self):
        """A box whose slot records no hash is given the delta by its version; when its content is
        not the delta's base the box refuses it with 409 before writing anything, and update.yml
        sends it the full bundle instead of stopping the run."""
        f = self.fleet
        other = f.bundle("1.5.0", name="poshub-1.5.0-other-build", seed=1)
        full = f.bundle("1.6.0", base="1.5.0")
        delta = f.bundle("1.6.0", base="1.5.0", name="poshub-1.6.0-delta-from-other", delta_from=other)
        nohash, hashed = f.boxes[1], f.boxes[2]
        check(nohash.committed_on("1.5.0") and hashed.committed_on("1.5.0"), "box02/box03 not on 1.5.0")
        # As a box flashed from an image: its booted slot's hash was never recorded.
        nohash.stop()
        path = nohash.path("data", "supervisor", "slots.json")
        doc = nohash.slots()   # the slot store: {"A": {...}, "B": {...}, "trial": ..., ...}
        check("A" in doc and "B" in doc, "box02's slot store: %s" % doc)
        for slot in ("A", "B"):
            doc[slot]["sha256"] = None
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(doc, fh)
        nohash.start()
        check(f.wait_ready(60), "box02 did not come back after its slot store was edited")
        now = nohash.slots()
        check(all(now.get(s, {}).get("sha256") is None for s in ("A", "B")),
              "box02 still records a hash after the edit: %s" % now)
        booted = "A" if now["A"].get("version") == "1.5.0" else "B"
        wire = {b.name: b.wire_bytes()[0] for b in (nohash, hashed)}
        rc, out, wall = self.playbook("update.yml", "-l", "%s,%s" % (nohash.name, hashed.name),
                                      "-e", "bundle=" + full, "-e", "delta=" + delta,
                                      "-e", "poshub_update_timeout=60")
        check(rc == 0, "update.yml did not fall back to the full bundle (rc %d)" % rc, out)
        full_size = os.path.getsize(full)
        for b in (nohash, hashed):
            check(b.committed_on("1.6.0"), "%s is not committed on 1.6.0: %s" % (b.name, b.slots()), out)
            check(b.wire_bytes()[0] - wire[b.name] >= full_size, "%s did not receive the full bundle" % b.name, out)
        check("install the full bundle" in out, "the box's refusal of the delta is not shown", out)
        rows, rout = self.report()
        sent = {b.name: rows[b.name].get("sent") or {} for b in (nohash, hashed)}
        check(sent[nohash.name].get("kind") == "full" and sent[nohash.name].get("delta_refused")
              and sent[hashed.name].get("kind") == "full" and not sent[hashed.name].get("delta_refused"),
              "report: %s" % sent, rout)
        md = open(os.path.join(f.dir, "reports", "fleet-report.md"), encoding="utf-8").read()
        check(re.search(r"^\| box02 \|.*\| 1\.6\.0: full \(delta refused\), %d bytes \|" % full_size, md, re.M),
              "report:\n" + md)
        return ("box02 (slot %s, no hash recorded) refused the delta (409, nothing written) and got the full "
                "bundle; box03 (hash recorded) got the full bundle at once; both committed 1.6.0 in %.1f s"
                % (booted, wall))

    def format4_delta_only_to_boxes_that_read_it(self):
        """A format 4 delta (root + boot base) goes only to boxes whose supervisor reads format 4.
        box04 runs this supervisor; box05 and box06 answer as a supervisor that reads formats 1 to
        3 (old_supervisor_api.py in front of the real one): box05's /slots has no bundleFormats,
        box06's says [1, 2, 3, 4] yet it refuses format 4 with the older supervisor's 400. Given
        slot boot partitions, the three first get a full bundle with a boot image (format 2)."""
        f = self.fleet
        new, absent, claims = boxes = f.boxes[3:6]
        for b, old in ((new, None), (absent, "absent"), (claims, "claims-4")):
            b.reconfigure(boot_devices=True, old_api=old)
        check(f.wait_ready(60), "box04-06 did not come back with boot partitions")
        limit = ",".join(b.name for b in boxes)
        base = f.bundle("1.7.0", boot=True)
        rc, out, _ = self.playbook("update.yml", "-l", limit, "-e", "bundle=" + base, "-e", "poshub_update_timeout=60")
        check(rc == 0 and all(b.committed_on("1.7.0") for b in boxes), "box04-06 did not commit 1.7.0", out)
        full = f.bundle("1.8.0", base="1.7.0", boot=True)
        delta = f.bundle("1.8.0", base="1.7.0", boot=True, name="poshub-1.8.0-delta-from-1.7.0", delta_from=base)
        r = f.controller([os.path.join(self.args.ansible_bin, "python"), "-c",
                          "import sys; sys.path.insert(0, 'library'); import poshub_bundle_info as i;"
                          "print(i.read_manifest(sys.argv[1])['format'])", delta], None, FLEET_DIR, 30)
        check(r.stdout.strip() == "4", "the delta is not format 4: %s%s" % (r.stdout, r.stderr))
        full_size, delta_size = os.path.getsize(full), os.path.getsize(delta)
        wire = {b.name: b.wire_bytes()[0] for b in boxes}
        rc, out, wall = self.playbook("update.yml", "-l", limit, "-e", "bundle=" + full, "-e", "delta=" + delta,
                                      "-e", "poshub_update_timeout=60")
        check(rc == 0, "update.yml stopped at a box that cannot read format 4 (rc %d)" % rc, out)
        to_box = {b.name: b.wire_bytes()[0] - wire[b.name] for b in boxes}
        for b in boxes:
            check(b.committed_on("1.8.0"), "%s is not committed on 1.8.0: %s" % (b.name, b.slots()), out)
        check(to_box[new.name] < delta_size + 200_000, "box04 received %d bytes (delta %d)" % (to_box[new.name], delta_size), out)
        check(to_box[absent.name] >= full_size and not absent.old_api_refusals(),
              "box05 was offered the delta: %d bytes, refusals %s" % (to_box[absent.name], absent.old_api_refusals()), out)
        check(to_box[claims.name] >= full_size + delta_size and len(claims.old_api_refusals()) == 1,
              "box06 did not refuse the delta then get the full bundle: %d bytes, refusals %s"
              % (to_box[claims.name], claims.old_api_refusals()), out)
        check("not the delta's format 4" in out and "update the supervisor first" in out,
              "the playbook does not say why box05 and box06 got the full bundle", out)
        rows, rout = self.report()
        sent = {b.name: rows[b.name].get("sent") or {} for b in boxes}
        check(sent[new.name].get("kind") == "delta" and sent[new.name].get("bytes") == delta_size
              and sent[absent.name].get("kind") == "full" and "format 4" in sent[absent.name].get("delta_skipped", "")
              and not sent[absent.name].get("delta_refused")
              and sent[claims.name].get("kind") == "full"
              and "update the supervisor first" in sent[claims.name].get("delta_refused", ""), "report: %s" % sent, rout)
        md = open(os.path.join(f.dir, "reports", "fleet-report.md"), encoding="utf-8").read()
        check(re.search(r"^\| box05 \|.*\| 1\.8\.0: full \(delta skipped: the box reads bundle formats 1, 2, 3, "
                        r"not the delta's format 4\), %d bytes \|" % full_size, md, re.M)
              and re.search(r"^\| box06 \|.*\| 1\.8\.0: full \(delta refused\), %d bytes \|" % full_size, md, re.M),
              "report:\n" + md)
        self.figures["format4"] = {"full_bytes": full_size, "delta_bytes": delta_size, "wall_s": round(wall, 1),
                                   "wire_bytes": to_box}
        # Any other 400 to a delta still stops the run, and the full bundle is not sent.
        nxt = f.bundle("1.9.0", base="1.8.0", boot=True)
        damaged = f.bundle("1.9.0", base="1.8.0", boot=True, name="poshub-1.9.0-delta-damaged", delta_from=full)
        with open(damaged, "r+b") as fh:  # one payload byte changed after signing
            fh.seek(-1, os.SEEK_END)
            last = fh.read(1)
            fh.seek(-1, os.SEEK_END)
            fh.write(bytes([last[0] ^ 0xFF]))
        before = new.wire_bytes()[0]
        rc, out, _ = self.playbook("update.yml", "-l", new.name, "-e", "bundle=" + nxt, "-e", "delta=" + damaged)
        check(rc != 0 and "box04 refused the delta" in out and "signed checksum" in out,
              "a damaged delta did not stop the run", out)
        sent = new.wire_bytes()[0] - before
        check(new.committed_on("1.8.0") and sent < os.path.getsize(damaged) + 200_000,
              "box04 was sent the full bundle after a 400 that is not about the format (%d bytes; slots %s)"
              % (sent, new.slots()), out)
        return ("format 4 delta (%d bytes) to box04 (%d on the wire); box05 (no bundleFormats) got the full bundle "
                "(%d bytes) without being offered the delta; box06 refused it (400) and got the full bundle; "
                "all committed 1.8.0 in %.1f s" % (delta_size, to_box[new.name], full_size, wall))



def readme_blocks():
    with open(os.path.join(FLEET_DIR, "README.md"), encoding="utf-8") as f:
        return re.findall(r"```sh\n(.*?)```", f.read(), re.S)


README_STEPS = [r"^ansible-inventory -i inventory/tailscale\.py --graph$", r"ansible-vault encrypt_string",
                r"^ansible-playbook update\.yml -l canary ", r"^ansible-playbook status\.yml$",
                r"^ansible-playbook update\.yml -l stable ", r"^ansible-playbook rollback\.yml -l canary "]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ansible-bin", required=True, help="directory holding ansible-playbook")
    ap.add_argument("--bin-dir", default=os.path.join(os.path.dirname(FLEET_DIR), "target", "debug"))
    ap.add_argument("--boxes", type=int, default=12)
    ap.add_argument("--keep", action="store_true", help="keep the fleet's directory")
    ap.add_argument("--record", help="save real API documents of chosen moments here (test_units.py fixtures)")
    ap.add_argument("--only", help="comma-separated scenarios (they build on each other)")
    args = ap.parse_args()
    args.ansible_bin, args.bin_dir = os.path.abspath(args.ansible_bin), os.path.abspath(args.bin_dir)
    if args.record:
        args.record = os.path.abspath(args.record)
        os.makedirs(args.record, exist_ok=True)
    s = Suite(args)
    names = ["good_bundle_in_waves", "rerun_uploads_nothing", "refused_bundle_stops_the_run",
             "unhealthy_bundle_rolls_back_the_canary_only",
             "box_that_stops_answering_stops_the_run", "report_lists_every_box", "readme_operator_day",
             "delta_to_boxes_on_its_base", "refused_delta_falls_back_to_full",
             "format4_delta_only_to_boxes_that_read_it"]
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    t0 = time.monotonic()
    try:
        s.fleet.setup()
        s.inv = s.fleet.inventory(os.path.join(s.fleet.dir, "inventory.yml"))
        if not s.fleet.wait_ready(120):
            tails = ["%s: %s" % (b.name, open(b.path("supervisor.log"), errors="replace").read()[-600:])
                     for b in s.fleet.boxes[:2] if os.path.exists(b.path("supervisor.log"))]
            raise Failed("the fleet did not come up:\n" + "\n".join(tails))
        print("fleet of %d boxes up in %.1f s (%s)" % (args.boxes, time.monotonic() - t0, s.fleet.dir), flush=True)
        for n in names:
            t = time.monotonic()
            msg = getattr(s, n)()
            print("PASS %s (%.1f s): %s" % (n, time.monotonic() - t, msg), flush=True)
    except Failed as e:
        print("FAIL: %s" % e, flush=True)
        return 1
    finally:
        s.fleet.close(keep=args.keep)
    print("figures: %s" % json.dumps(s.figures))
    print("all fleet tests passed in %.1f s" % (time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
