"""A simulated fleet for the playbook tests: network namespaces the test creates (one per box,
one for the Ansible controller, one holding the bridge), each box running box_runner.py around
the real poshub-supervisor and poshub. Addresses are in 10.213.0.0/24 on that bridge only; no
traffic leaves these namespaces. Everything is torn down by close() (also after a failure).
"""

import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SUBNET = "10.213.0"
CONTROLLER_IP = SUBNET + ".2"
TOKEN_ENV = "POSHUB_API_TOKEN"


def sh(*args, check=True, **kw):
    return subprocess.run(list(args), check=check, capture_output=True, text=True, **kw)


def boot_image(version, base=None, size=256 << 10):
    """A simulated slot boot partition image (kernel, initrd...): seeded random bytes; `base`:
    the image of that version with its last 16 KiB changed (a new kernel build of one driver)."""
    if base is None:
        return random.Random("boot/%s" % version).randbytes(size)
    tail = random.Random("boot/%s/tail" % version).randbytes(16 << 10)
    return boot_image(base, size=size)[:size - len(tail)] + tail


def root_image(version, hub_http_port=8766, size=2 << 20, seed=0, base=None):
    """A simulated root filesystem image: header (see box_runner.py) and seeded random bytes
    (incompressible, so the bundle is as large as a real image of that size would compress to).
    `base`: the image of that version with its header and last 64 KiB changed (a release that
    changed little, for delta bundles)."""
    head = ("POSHUB-SIM-ROOTFS 1\nversion=%s\nhub_http_port=%d\n\n" % (version, hub_http_port)).encode()
    if base is None:
        rnd = random.Random("%s/%d" % (version, seed))
        return head + rnd.randbytes(size - len(head))
    old = root_image(base, hub_http_port, size, seed)
    tail = random.Random("%s/%d/tail" % (version, seed)).randbytes(64 << 10)
    return head + old[len(head):size - len(tail)] + tail


class Box:
    def __init__(self, fleet, index):
        self.fleet = fleet
        self.index = index
        self.name = "box%02d" % index
        self.ip = "%s.%d" % (SUBNET, 10 + index)
        self.ns = "%s-%s" % (fleet.prefix, self.name)
        self.veth = "vb%02d" % index
        self.root = os.path.join(fleet.dir, self.name)
        self.proc = None
        # Set by with_boot_devices() and old_api(): restart the box for them to take effect.
        self.boot_devices = False
        self.old_api = None

    def path(self, *rel):
        return os.path.join(self.root, *rel)

    def slots(self):
        """slots.json as stored (read from the box's disk, not over the network)."""
        try:
            with open(self.path("data", "supervisor", "slots.json"), encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def spool_mtime(self):
        """mtime of the upload spool directory (changes with every upload), or None."""
        try:
            return os.stat(self.path("data", "supervisor", "incoming")).st_mtime_ns
        except OSError:
            return None

    def footprint(self):
        """What a push leaves on a box: spool changes and journal events."""
        s = self.slots()
        return {"spool": self.spool_mtime(), "journal": len(s.get("journal") or []),
                "installs": [s.get(x, {}).get("install_count") for x in ("A", "B")]}

    def events(self):
        return [e["event"] for e in self.slots().get("journal") or []]

    def version(self):
        """The OS version the box booted (its version file, written from the booted image)."""
        with open(self.path("version"), encoding="utf-8") as f:
            return f.read().strip()

    def committed_on(self, version):
        s = self.slots()
        bs = self.fleet.boot_state(self)
        booted = bs.get("booted")
        cur = s.get(booted) or {}
        return (booted == bs.get("primary") and cur.get("state") == "good"
                and cur.get("version") == version and not s.get("trial"))

    def write_env(self):
        f = self.fleet
        env = {
            "SUPERVISOR_DATA_DIR": self.path("data"),
            "SUPERVISOR_HUB_BIN": f.hub_bin,
            "SUPERVISOR_HUB_ARGS": "serve --config %s" % self.path("poshub.env"),
            "SUPERVISOR_HUB_HEALTH_URL": "http://127.0.0.1:8766/health",
            "SUPERVISOR_SLOT_BACKEND": "file",
            "SUPERVISOR_BOOT_DIR": self.path("boot"),
            "SUPERVISOR_SLOT_A_DEVICE": self.path("slot-a.img"),
            "SUPERVISOR_SLOT_B_DEVICE": self.path("slot-b.img"),
            "SUPERVISOR_PUBLIC_KEY": os.path.join(f.dir, "keys", "release.pub"),
            "SUPERVISOR_BOARD": "rpi4",
            "SUPERVISOR_OS_VERSION_FILE": self.path("version"),
            "SUPERVISOR_BOOT_ID_FILE": self.path("boot_id"),
            "SUPERVISOR_API_PORT": "8767",
            # SUPERVISOR_API_BIND left at its default, 127.0.0.1,tailscale0: the box's link to
            # the bridge is named tailscale0, as its tailnet interface on a real box.
            "SUPERVISOR_API_TOKEN": f.token,
            "SUPERVISOR_HEALTH_INTERVAL_MS": "200",
            "SUPERVISOR_HEALTH_TIMEOUT_MS": "500",
            "SUPERVISOR_HEALTH_WINDOW_S": str(f.health_window_s),
            "SUPERVISOR_TRIAL_TIMEOUT_S": str(f.trial_timeout_s),
            "SUPERVISOR_RESTART_BACKOFF_MIN_MS": "200",
            "SUPERVISOR_RESTART_BACKOFF_MAX_MS": "1000",
            "SUPERVISOR_MIN_FREE_MB": "1",
            "SUPERVISOR_CLOCK_SET": "false",
        }
        if self.boot_devices:
            env["SUPERVISOR_SLOT_A_BOOT_DEVICE"] = self.path("boot-a.img")
            env["SUPERVISOR_SLOT_B_BOOT_DEVICE"] = self.path("boot-b.img")
        if self.old_api:
            env["SUPERVISOR_API_BIND"] = "127.0.0.1"  # old_supervisor_api serves tailscale0
        with open(self.path("supervisor.env"), "w", encoding="utf-8") as fh:
            fh.write("".join("%s=%s\n" % kv for kv in env.items()))

    def create(self):
        os.makedirs(self.path("data"))
        os.makedirs(self.path("boot"))
        with open(self.path("slot-a.img"), "wb") as fh:
            fh.write(root_image(self.fleet.factory_version))
        with open(self.path("slot-b.img"), "wb") as fh:
            fh.write(bytes(4096))
        self.write_env()
        f = self.fleet
        sh("ip", "netns", "add", self.ns)
        sh("ip", "-n", self.ns, "link", "set", "lo", "up")
        # The box's end is its tailnet interface (the update API listens there, and on loopback).
        sh("ip", "-n", f.br_ns, "link", "add", self.veth, "type", "veth", "peer", "name", "tailscale0",
           "netns", self.ns)
        sh("ip", "-n", f.br_ns, "link", "set", self.veth, "master", "br0", "up")
        sh("ip", "-n", self.ns, "addr", "add", self.ip + "/24", "dev", "tailscale0")
        sh("ip", "-n", self.ns, "link", "set", "tailscale0", "up")

    def reconfigure(self, boot_devices, old_api):
        """Restarts the box with slot boot partitions (empty ones at first) and/or serving an
        older supervisor's API (old_supervisor_api.MODES, or None)."""
        self.stop()
        if boot_devices and not self.boot_devices:
            for slot in ("a", "b"):
                with open(self.path("boot-%s.img" % slot), "wb") as fh:
                    fh.write(bytes(4096))
        self.boot_devices, self.old_api = boot_devices, old_api
        self.write_env()
        self.start()

    def old_api_refusals(self):
        """The uploads the older supervisor's API refused (old-api.log lines)."""
        try:
            with open(self.path("old-api.log"), encoding="utf-8") as f:
                return [ln for ln in f if "refused a format" in ln]
        except OSError:
            return []

    def start(self):
        log = open(self.path("runner.stderr"), "ab")
        old = ["--old-api", self.old_api, "--old-api-bind", self.ip] if self.old_api else []
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "python3", os.path.join(HERE, "box_runner.py"),
             "--root", self.root, "--supervisor", self.fleet.sup_bin] + old,
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None
        # The runner exits at once; its supervisor and hub finish their clean stop (a stop
        # backup, the last journal entry) after it. Wait for them: the box is off only then.
        end = time.monotonic() + 30
        while sh("ip", "netns", "pids", self.ns, check=False).stdout.strip() and time.monotonic() < end:
            time.sleep(0.2)

    def wire_bytes(self):
        """(bytes sent to the box, bytes it sent) on its cable, from the bridge port's counters."""
        out = sh("ip", "-n", self.fleet.br_ns, "-j", "-s", "link", "show", "dev", self.veth)
        st = json.loads(out.stdout)[0]["stats64"]
        return st["tx"]["bytes"], st["rx"]["bytes"]

    def link(self, up):
        """Cut (or restore) the box's cable on the bridge: it stops answering."""
        sh("ip", "-n", self.fleet.br_ns, "link", "set", self.veth, "up" if up else "down")


class Fleet:
    def __init__(self, n, sup_bin, hub_bin, health_window_s=2, trial_timeout_s=8):
        self.prefix = "pf%d" % (os.getpid() % 100000)
        self.br_ns = self.prefix + "-br"
        self.ctl_ns = self.prefix + "-ctl"
        self.dir = tempfile.mkdtemp(prefix="poshub-fleet-")
        self.sup_bin = os.path.abspath(sup_bin)
        self.hub_bin = os.path.abspath(hub_bin)
        self.token = os.urandom(18).hex()
        self.factory_version = "1.0.0"
        self.health_window_s = health_window_s
        self.trial_timeout_s = trial_timeout_s
        self.boxes = [Box(self, i + 1) for i in range(n)]
        self.namespaces = []

    def boot_state(self, box):
        try:
            with open(box.path("boot", "boot-state.json"), encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def setup(self):
        os.makedirs(os.path.join(self.dir, "keys"))
        out = sh(self.sup_bin, "keygen", "--out", os.path.join(self.dir, "keys", "release"))
        assert out.returncode == 0, out.stderr
        for ns in (self.br_ns, self.ctl_ns):
            sh("ip", "netns", "add", ns)
            self.namespaces.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", self.br_ns, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.br_ns, "link", "set", "br0", "up")
        sh("ip", "-n", self.br_ns, "link", "add", "vctl", "type", "veth", "peer", "name", "eth0",
           "netns", self.ctl_ns)
        sh("ip", "-n", self.br_ns, "link", "set", "vctl", "master", "br0", "up")
        sh("ip", "-n", self.ctl_ns, "addr", "add", CONTROLLER_IP + "/24", "dev", "eth0")
        sh("ip", "-n", self.ctl_ns, "link", "set", "eth0", "up")
        for b in self.boxes:
            self.namespaces.append(b.ns)
            b.create()
        for b in self.boxes:
            b.start()

    def wait_ready(self, timeout=60):
        """Every box booted, its slot adopted and its hub healthy (read from its disk)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if all("adopt" in b.events() and self.hub_up(b) for b in self.boxes):
                return True
            time.sleep(0.5)
        return False

    def hub_up(self, box):
        out = sh("ip", "netns", "exec", box.ns, "python3", "-c",
                 "import urllib.request,sys;"
                 "sys.exit(0 if b'\"ok\"' in urllib.request.urlopen('http://127.0.0.1:8766/health',"
                 " timeout=2).read() else 1)", check=False)
        return out.returncode == 0

    def bundle(self, version, hub_http_port=8766, name=None, key="release", base=None, delta_from=None, seed=0,
               boot=False):
        """A signed bundle of a simulated root image, made by `poshub-supervisor bundle create`
        (`key`: another name than "release" signs with a key the boxes do not trust; `base`: see
        root_image; `delta_from`: a bundle file, makes a delta bundle against it (format 4 when
        both carry a boot image); `seed`: another content for the same version, as a rebuild that
        changed everything; `boot`: also carry a boot image (boot_image, same `base`))."""
        name = name or "poshub-%s" % version
        keyfile = os.path.join(self.dir, "keys", key)
        if not os.path.exists(keyfile + ".key"):
            out = sh(self.sup_bin, "keygen", "--out", keyfile)
            assert out.returncode == 0, out.stderr
        img = os.path.join(self.dir, name + ".img")
        with open(img, "wb") as f:
            f.write(root_image(version, hub_http_port, seed=seed, base=base))
        extra = ["--delta-from", delta_from] if delta_from else []
        if boot:
            extra += ["--boot-image", img + ".boot"]
            with open(img + ".boot", "wb") as f:
                f.write(boot_image(version, base=base))
        out_path = os.path.join(self.dir, name + ".poshub")
        out = sh(self.sup_bin, "bundle", "create", "--image", img, "--key", keyfile + ".key", "--version", version,
                 "--board", "rpi4", "--out", out_path, "--level", "3", *extra, check=False)
        assert out.returncode == 0, out.stderr
        os.unlink(img)
        if boot:
            os.unlink(img + ".boot")
        return out_path

    def inventory(self, path):
        """A static inventory of the fleet in the layout of fleet/inventory/hosts.yml."""
        lines = ["---", "all:", "  children:", "    canary:", "      hosts:"]
        for i, b in enumerate(self.boxes):
            if i == 1:
                lines += ["    stable:", "      hosts:"]
            lines += ["        %s:" % b.name, "          ansible_host: %s" % b.ip]
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def controller(self, argv, env, cwd, timeout):
        """Runs a command (ansible-playbook) in the controller's namespace."""
        return subprocess.run(["ip", "netns", "exec", self.ctl_ns] + argv, env=env, cwd=cwd,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def close(self, keep=False):
        for b in self.boxes:
            try:
                b.stop()
            except (OSError, subprocess.SubprocessError):
                pass
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False)
        self.namespaces = []
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)
