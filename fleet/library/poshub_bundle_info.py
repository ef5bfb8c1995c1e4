#!/usr/bin/python
"""Ansible module: read the manifest of a .poshub bundle on the controller."""

DOCUMENTATION = r"""
module: poshub_bundle_info
short_description: Read the (signed) manifest of a poshub update bundle
description:
  - Reads the header of a .poshub file (magic POSHUBB1, manifest length, manifest JSON). The
    signature is checked by the box, which refuses a bundle it cannot verify; this only tells
    the playbook which version it is pushing.
options:
  path: {description: The bundle, required: true, type: path}
"""

RETURN = r"""
manifest: {description: The manifest, type: dict, returned: success}
version: {description: manifest.version, type: str, returned: success}
size: {description: File size in bytes, type: int, returned: success}
path: {description: The bundle, type: str, returned: success}
"""

import json
import os
import struct

from ansible.module_utils.basic import AnsibleModule

MAGIC = b"POSHUBB1"


def read_manifest(path):
    """The manifest dict; ValueError with a clear message for anything else."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:8] != MAGIC:
            raise ValueError("%s is not a poshub bundle (no POSHUBB1 magic)" % path)
        (length,) = struct.unpack("<I", head[8:12])
        if length > 65536:
            raise ValueError("%s: manifest length %d is over 65536" % (path, length))
        raw = f.read(length)
    if len(raw) != length:
        raise ValueError("%s is truncated inside its manifest" % path)
    m = json.loads(raw.decode("utf-8"))
    if not isinstance(m, dict) or not isinstance(m.get("version"), str):
        raise ValueError("%s: manifest has no version" % path)
    return m


def main():
    module = AnsibleModule(argument_spec=dict(path=dict(type="path", required=True)),
                           supports_check_mode=True)
    path = module.params["path"]
    try:
        m = read_manifest(path)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        module.fail_json(msg="unable to read bundle: %s" % e)
    module.exit_json(changed=False, manifest=m, version=m["version"], size=os.path.getsize(path),
                     path=path)


if __name__ == "__main__":
    main()
