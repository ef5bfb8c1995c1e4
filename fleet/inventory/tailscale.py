#!/usr/bin/env python3
"""Dynamic inventory: the poshub boxes on the tailnet.

Reads `tailscale status --json` (or the file named by POSHUB_TAILSCALE_STATUS, e.g. a recorded
status) and keeps the peers carrying the poshub tag (POSHUB_TAILSCALE_TAG, default
`tag:poshub`). A peer that also carries POSHUB_TAILSCALE_CANARY_TAG (default
`tag:poshub-canary`) goes into the `canary` group, every other one into `stable`. Each host is
named by its MagicDNS name's first label and gets its first Tailscale IPv4 address as
ansible_host, plus tailscale_online and tailscale_dns_name.

    ansible-inventory -i inventory/tailscale.py --graph
"""

import json
import os
import subprocess
import sys


def load_status():
    path = os.environ.get("POSHUB_TAILSCALE_STATUS")
    if path:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    out = subprocess.run(["tailscale", "status", "--json"], capture_output=True, text=True,
                         check=False, timeout=30)
    if out.returncode != 0:
        raise RuntimeError("tailscale status --json failed: %s" % out.stderr.strip())
    return json.loads(out.stdout)


def host_name(peer):
    dns = (peer.get("DNSName") or "").rstrip(".")
    return dns.split(".")[0] if dns else peer.get("HostName")


def inventory(status, tag, canary_tag):
    groups = {"canary": [], "stable": []}
    hostvars = {}
    peers = (status.get("Peer") or {}).values()
    for peer in sorted(peers, key=lambda p: host_name(p) or ""):
        tags = peer.get("Tags") or []
        name = host_name(peer)
        if tag not in tags or not name:
            continue
        ipv4 = [ip for ip in peer.get("TailscaleIPs") or [] if "." in ip]
        if not ipv4:
            continue
        groups["canary" if canary_tag in tags else "stable"].append(name)
        hostvars[name] = {
            "ansible_host": ipv4[0],
            "tailscale_online": bool(peer.get("Online")),
            "tailscale_dns_name": (peer.get("DNSName") or "").rstrip("."),
        }
    return {
        "_meta": {"hostvars": hostvars},
        "all": {"children": ["canary", "stable"]},
        "canary": {"hosts": groups["canary"]},
        "stable": {"hosts": groups["stable"]},
    }


def main(argv):
    try:
        inv = inventory(load_status(), os.environ.get("POSHUB_TAILSCALE_TAG", "tag:poshub"),
                        os.environ.get("POSHUB_TAILSCALE_CANARY_TAG", "tag:poshub-canary"))
    except (OSError, ValueError, RuntimeError, subprocess.TimeoutExpired) as e:
        print("tailscale inventory: %s" % e, file=sys.stderr)
        return 1
    if len(argv) > 2 and argv[1] == "--host":
        print(json.dumps(inv["_meta"]["hostvars"].get(argv[2], {})))
    else:
        print(json.dumps(inv, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
