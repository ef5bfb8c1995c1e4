#!/usr/bin/env python3
"""One simulated poshub box: what the bootloader, the root filesystem and systemd do, around the
real `poshub-supervisor run` (file slot backend) and the real `poshub`.

Runs inside the box's network namespace. A power-on is `poshub-supervisor emulate-boot` (the
file backend's bootloader: picks the default or the one-shot trial slot, new boot id). The booted
slot's image then plays the root filesystem: its header says which OS version it is (written to
the box's version file, like /etc/poshub-version) and how its hub is configured (written to the
hub's env file). A slot that does not hold a readable image does not boot: power-on again, like
a bootloader falling back. Then the supervisor runs until it exits: after a reboot request
(the file backend counts them in boot-state.json) that is a new power-on; otherwise systemd's
Restart=always, i.e. start it again. SIGTERM stops the supervisor and the runner.

With --old-api MODE the box answers on its tailnet address as a supervisor that reads bundle
formats 1 to 3 would (old_supervisor_api.py); the real supervisor then listens on loopback only.

Image header (first line must match): `POSHUB-SIM-ROOTFS 1`, then `key=value` lines up to a
blank line: `version`, `hub_http_port` (where this image's hub serves /health).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time

import old_supervisor_api

MAGIC = b"POSHUB-SIM-ROOTFS 1\n"


def parse_image(path):
    """The header of a simulated root image as a dict, or None if the slot holds none."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return None
    if not head.startswith(MAGIC):
        return None
    fields = {}
    for line in head[len(MAGIC):].split(b"\n"):
        if not line.strip():
            break
        k, _, v = line.decode("ascii", "replace").partition("=")
        fields[k.strip()] = v.strip()
    return fields if "version" in fields else None


class Box:
    def __init__(self, root, sup):
        self.root = root
        self.sup = sup
        self.env = os.path.join(root, "supervisor.env")
        self.child = None
        self.stopping = False

    def log(self, msg):
        with open(os.path.join(self.root, "runner.log"), "a", encoding="utf-8") as f:
            f.write("%.3f %s\n" % (time.time(), msg))

    def reboots(self):
        try:
            with open(os.path.join(self.root, "boot", "boot-state.json"), encoding="utf-8") as f:
                return json.load(f).get("reboot_requests", 0)
        except (OSError, ValueError):
            return 0

    def power_on(self):
        """Emulated power-on until a slot with a root image boots; returns its header."""
        for _ in range(5):
            out = subprocess.run([self.sup, "--config", self.env, "emulate-boot"],
                                 capture_output=True, text=True, check=False)
            self.log("power-on: %s%s" % (out.stdout.strip(), out.stderr.strip()))
            slot = "a" if out.stdout.strip().startswith("booted slot A") else "b"
            hdr = parse_image(os.path.join(self.root, "slot-%s.img" % slot))
            if hdr is not None:
                return hdr
            self.log("slot %s holds no root image: boot failed" % slot)
        raise SystemExit("no bootable slot")

    def mount(self, hdr):
        """What the booted root filesystem provides: its version and its hub configuration."""
        with open(os.path.join(self.root, "version"), "w", encoding="utf-8") as f:
            f.write(hdr["version"] + "\n")
        with open(os.path.join(self.root, "poshub.env"), "w", encoding="utf-8") as f:
            f.write("HUB_BIND=0.0.0.0\nHUB_PORT=8765\nHUB_HTTP_PORT=%s\nHUB_MDNS_ENABLED=false\n"
                    % hdr.get("hub_http_port", "8766"))
        self.log("root image version %s mounted" % hdr["version"])

    def run_supervisor(self):
        with open(os.path.join(self.root, "supervisor.log"), "a", encoding="utf-8") as log:
            env = {k: v for k, v in os.environ.items()
                   if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "INVOCATION_ID", "JOURNAL_STREAM")}
            self.child = subprocess.Popen([self.sup, "run", "--config", self.env],
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
            code = self.child.wait()
            self.child = None
            return code

    def stop(self, *_):
        self.stopping = True
        if self.child is not None:
            self.child.send_signal(signal.SIGTERM)

    def main(self):
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        boot = True
        while not self.stopping:
            if boot:
                self.mount(self.power_on())
            before = self.reboots()
            code = self.run_supervisor()
            boot = self.reboots() > before
            self.log("supervisor exited %s%s" % (code, ", reboot requested" if boot else ""))
            if not boot and not self.stopping:
                time.sleep(1)  # systemd RestartSec


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True, help="the box's directory")
    ap.add_argument("--supervisor", required=True, help="poshub-supervisor binary")
    ap.add_argument("--old-api", metavar="MODE", help="serve an older supervisor's API (old_supervisor_api.MODES)")
    ap.add_argument("--old-api-bind", metavar="IP", help="the box's tailnet address, for --old-api")
    a = ap.parse_args()
    if a.old_api:
        old_supervisor_api.serve(a.old_api_bind, 8767, a.old_api, os.path.join(a.root, "old-api.log"))
    Box(a.root, a.supervisor).main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
