#!/usr/bin/python
"""Ansible module: one request to a poshub box (update API or hub /health)."""

DOCUMENTATION = r"""
module: poshub_api
short_description: One request to a poshub box's update API or hub health endpoint
description:
  - GET a JSON document, or POST a bundle streamed from a file on the controller (never read
    into memory). The bearer token is a no_log parameter, so it never appears in output.
options:
  url: {description: Base URL, e.g. http://box:8767, required: true, type: str}
  path: {description: Request path, default: /slots, type: str}
  method: {description: HTTP method, default: GET, choices: [GET, POST], type: str}
  token: {description: Bearer token of the update API, type: str, no_log: true}
  src: {description: File streamed as the request body (POST), type: path}
  query: {description: Query parameters, type: dict, default: {}}
  expect: {description: Status codes that count as success, type: list, elements: int, default: [200]}
  timeout: {description: Socket timeout in seconds, default: 10, type: int}
  unreachable_ok: {description: Report an unreachable box as reachable=false instead of failing, type: bool, default: false}
"""

RETURN = r"""
reachable: {description: The box answered, type: bool, returned: always}
status: {description: HTTP status, type: int, returned: when reachable}
json: {description: Parsed JSON body, type: raw, returned: when reachable}
bytes_sent: {description: Bytes of the body sent, type: int, returned: always}
elapsed_s: {description: Wall time of the request, type: float, returned: always}
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.poshub_http import Unreachable, request


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type="str", required=True),
            path=dict(type="str", default="/slots"),
            method=dict(type="str", default="GET", choices=["GET", "POST"]),
            token=dict(type="str", no_log=True),
            src=dict(type="path"),
            query=dict(type="dict", default={}),
            expect=dict(type="list", elements="int", default=[200]),
            timeout=dict(type="int", default=10),
            unreachable_ok=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    posting = p["method"] == "POST"
    if posting and module.check_mode:
        module.exit_json(changed=True, reachable=None, bytes_sent=0, elapsed_s=0.0)
    start = time.monotonic()
    try:
        r = request(p["url"], p["path"], p["token"], p["method"], p["src"], p["query"], p["timeout"])
    except Unreachable as e:
        res = dict(changed=False, reachable=False, bytes_sent=0,
                   elapsed_s=round(time.monotonic() - start, 3), error=str(e))
        if p["unreachable_ok"]:
            module.exit_json(**res)
        module.fail_json(msg="box unreachable: %s" % e, **res)
    except (OSError, ValueError) as e:
        module.fail_json(msg=str(e), reachable=False, bytes_sent=0, elapsed_s=0.0)
    res = dict(changed=posting and r.status in p["expect"], reachable=True, status=r.status,
               json=r.json, bytes_sent=r.sent, elapsed_s=round(time.monotonic() - start, 3))
    if r.status not in p["expect"]:
        module.fail_json(msg="HTTP %d from %s%s: %s" % (r.status, p["url"], p["path"], r.error()), **res)
    module.exit_json(**res)


if __name__ == "__main__":
    main()
