#!/usr/bin/env bash
# No function over 80 lines in the hub's sources, tests excepted (issue 16). rustfmt layout is
# assumed: a function ends at the first `}` line at its own indentation; `#[cfg(test)]` modules
# sit at the end of their files and are not counted. Prints the longest functions; fails if
# any is over the limit. Needs only python3; runs in well under a second.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 - hub/src 80 5 <<'PY'
import os, re, sys
root = sys.argv[1]; limit = int(sys.argv[2]) if len(sys.argv) > 2 else 80
show = int(sys.argv[3]) if len(sys.argv) > 3 else 10
out = []
for dp, _, fs in os.walk(root):
    for f in fs:
        if not f.endswith('.rs'): continue
        p = os.path.join(dp, f); lines = open(p).read().split('\n')
        for i, l in enumerate(lines):
            if re.match(r'\s*#\[cfg\(test\)\]', l): break
            m = re.match(r'^(\s*)(pub(\([a-z]+\))? )?(async )?(unsafe )?fn ([a-z_0-9]+)', l)
            if not m or l.rstrip().endswith(';'): continue
            if '{' in l and l.rstrip().endswith('}'):
                n = 1
            else:
                close = re.compile('^' + m.group(1) + r'\}\s*$')
                j = next((j for j in range(i + 1, len(lines)) if close.match(lines[j])), i)
                n = j - i + 1
            out.append((n, f"{p}:{i+1}", m.group(6)))
out.sort(reverse=True)
over = sum(1 for o in out if o[0] > limit)
print(f"{over} functions over {limit} lines in {root}")
for n, where, name in out[:show]:
    print(f"{n:5} {name} ({where})")
sys.exit(1 if over else 0)
PY
