#!/usr/bin/env bash
# One-way dependencies between the top-level modules of each crate (issue 16).
#
# For hub/src and supervisor/src: every `crate::x` path (in `use` lines, `use crate::{a, b}`
# groups and inline paths) made in a file under module `m` is an edge m -> x. `super::` inside a
# top-level module stays in that module and so adds no edge. The check fails on
#   - any cycle between top-level modules, and
#   - any edge that goes against the layering declared below (a module may use modules of a
#     LOWER layer only; modules of the same layer must not use each other).
# Each offending edge is printed with the file:line that makes it. `--graph` prints every edge.
# Needs only bash and python3 (standard library). Runs in well under a second.
set -euo pipefail
cd "$(dirname "$0")/../.."

python3 - "$@" <<'PY'
import os, re, sys

# The allowed layering, top to bottom. A module may use modules in any layer below its own.
# Modules not listed fail the check, so a new module has to be placed here deliberately.
LAYERS = {
    "hub/src": [
        # entry points: the command line, and what it runs
        ["cli"],
        ["server", "ops", "config_check"],
        # terminals' WebSocket and the HTTP routes (net); the demo floor plan seeded at start
        ["net", "demo"],
        # the tasks that talk to the cloud (forwarder, bridge pull, register push, sessions)
        ["upstream"],
        # printer spoolers; the mDNS announcement
        ["print", "mdns"],
        # the shared handle every task gets (`Hub`); it starts nothing
        ["context"],
        # the cloud clients and their shared status (no task, no `Hub`)
        ["uplink"],
        # the ordering/leasing core and its output queues (engine::outbox)
        ["engine"],
        # ESC/POS rendering and printer counters the engine writes
        ["printer"],
        # persistence, the wire contract, backup files
        ["store", "protocol", "backups"],
        # small helpers below everything
        ["client", "logging", "metrics", "pages"],
        ["config"],
        ["auth", "station", "clock"],
        ["fsutil"],
    ],
    "supervisor/src": [
        # entry point
        ["cli"],
        # the service loop: starts the API, watches the hub, runs recovery
        ["run"],
        # the local HTTP API (status, update upload, reboot requests)
        ["api"],
        ["status"],
        # bundle install into the inactive slot
        ["install"],
        # the hub process and its recovery
        ["hub", "recovery", "config_check"],
        ["backup"],
        # single-purpose helpers
        ["lifecycle", "bundle", "download", "notify", "http", "dbcheck", "logging"],
        # A/B slots, then the configuration they are named in
        ["slots"],
        ["config"],
        # shared plain types (Slot, HubState, RebootRequest) and file helpers
        ["types", "fsutil"],
    ],
}

EDGE = re.compile(r"\bcrate::(\{|[a-z_][a-z0-9_]*)")

def strip_comments(text):
    out = []
    for line in text.split("\n"):
        i = line.find("//")
        out.append(line if i < 0 else line[:i])
    return "\n".join(out)

def group_names(text, start):
    """First names of the items of a `crate::{...}` group whose `{` is at `start`."""
    depth, items, item = 0, [], ""
    for c in text[start:]:
        if c == "{":
            depth += 1
            if depth == 1:
                continue
        elif c == "}":
            depth -= 1
            if depth == 0:
                break
        if depth == 1 and c == ",":
            items.append(item)
            item = ""
        else:
            item += c
    items.append(item)
    names = [re.match(r"\s*([a-z_][a-z0-9_]*)", i) for i in items]
    return [m.group(1) for m in names if m]

def top_module(root, path):
    rel = os.path.relpath(path, root).split(os.sep)
    if rel[0] == "bin" or rel[0] in ("lib.rs", "main.rs"):
        return None
    return rel[0][:-3] if rel[0].endswith(".rs") else rel[0]

def edges_of(root):
    edges = {}
    for dirpath, _, files in os.walk(root):
        for f in sorted(files):
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            src = top_module(root, path)
            if src is None:
                continue
            text = strip_comments(open(path, encoding="utf-8").read())
            for m in EDGE.finditer(text):
                line = text.count("\n", 0, m.start()) + 1
                targets = group_names(text, m.start(1)) if m.group(1) == "{" else [m.group(1)]
                for t in targets:
                    if t != src and t not in ("self",):
                        edges.setdefault((src, t), []).append(f"{path}:{line}")
    return edges

def cycles(nodes, edges):
    """Strongly connected components with more than one module (Tarjan)."""
    adj = {n: sorted({b for (a, b) in edges if a == n}) for n in nodes}
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = counter[0]; counter[0] += 1
        stack.append(v); on.add(v)
        for w in adj.get(v, []):
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))
    sys.setrecursionlimit(10000)
    for n in sorted(nodes):
        if n not in index:
            visit(n)
    return out

failed = False
show_graph = "--graph" in sys.argv
for root, layers in LAYERS.items():
    rank = {m: len(layers) - i for i, layer in enumerate(layers) for m in layer}
    edges = edges_of(root)
    nodes = {a for a, _ in edges} | {b for _, b in edges}
    if show_graph:
        print(f"# {root}: {len(edges)} edges")
        for (a, b) in sorted(edges):
            print(f"{a} -> {b}")
    for comp in cycles(nodes, edges):
        failed = True
        print(f"{root}: import cycle between {', '.join(comp)}:")
        for (a, b), sites in sorted(edges.items()):
            if a in comp and b in comp:
                print(f"  {a} -> {b}  ({sites[0]}{' +%d more' % (len(sites) - 1) if len(sites) > 1 else ''})")
    for (a, b), sites in sorted(edges.items()):
        for mod in (a, b):
            if mod not in rank:
                failed = True
                print(f"{root}: module `{mod}` is not placed in a layer of .ci/checks/module-deps.sh")
                rank[mod] = 0
        if rank[a] <= rank[b]:
            failed = True
            print(f"{root}: {a} -> {b} goes against the layering:")
            for s in sites:
                print(f"  {s}")
if failed:
    sys.exit(1)
print("module dependencies: one way, no cycle")
PY
