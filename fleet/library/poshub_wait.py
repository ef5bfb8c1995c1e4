#!/usr/bin/python
"""Ansible module: wait for a poshub box to finish an update and report the trial outcome."""

DOCUMENTATION = r"""
module: poshub_wait
short_description: Follow an update on a poshub box until its trial is committed or rolled back
description:
  - Polls GET /update/status until the install is done, then until its C(outcome) (the trial
    that followed, docs/updates.md section 6) is C(committed) or C(rolled-back).
  - Committed also needs GET /slots to show the box booted the outcome's slot as the bootloader
    default (the supervisor commits the slot store first, then the bootloader: the outcome alone
    does not say the second step is done).
  - Rolled back carries the outcome's C(reason) (crash loop, health timeout, boot attempts
    exhausted, ...).
options:
  url: {description: Base URL of the update API, required: true, type: str}
  token: {description: Bearer token, type: str, no_log: true}
  version: {description: Version the box must commit, required: true, type: str}
  timeout: {description: Seconds allowed for install, reboot and trial together, default: 600, type: int}
  interval: {description: Seconds between polls, default: 1, type: float}
  request_timeout: {description: Socket timeout of one poll, default: 5, type: int}
"""

RETURN = r"""
outcome: {description: committed, rolled_back, install_failed or timeout, type: str, returned: always}
reason: {description: Why it was not committed, type: str, returned: always}
slots: {description: The last GET /slots document, type: dict, returned: always}
update_status: {description: The last GET /update/status document, type: dict, returned: always}
wait_s: {description: Seconds waited, type: float, returned: always}
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.poshub_http import Unreachable, poll, request


def trial_outcome(status):
    """The `outcome` object of /update/status ({state, slot, version, reason, at}), or None."""
    o = (status or {}).get("outcome")
    return o if isinstance(o, dict) else None


def classify(status, slots, version):
    """('committed'|'rolled_back', reason) once the trial of `version` has ended, else None.

    `status` is /update/status, `slots` is /slots (None when it could not be read)."""
    o = trial_outcome(status)
    if o is None or o.get("version") != version:
        return None
    if o.get("state") == "rolled-back":
        return "rolled_back", str(o.get("reason") or "no reason recorded")
    if o.get("state") != "committed" or not slots:
        return None  # armed, trying
    if slots.get("booted") == o.get("slot") and slots.get("default") == o.get("slot"):
        return "committed", ""
    return None  # store committed, bootloader default not yet written


class Follower:
    """Keeps the last documents seen, for the result and for error messages."""

    def __init__(self, p):
        self.p = p
        self.slots = {}
        self.status = {}
        self.last_error = ""

    def get(self, path):
        try:
            r = request(self.p["url"], path, self.p["token"], timeout=self.p["request_timeout"])
        except Unreachable as e:
            self.last_error = str(e)
            return None
        if r.status != 200 or not isinstance(r.json, dict):
            self.last_error = "HTTP %d on %s: %s" % (r.status, path, r.error())
            return None
        return r.json

    def install_done(self):
        """True once the install left receiving/installing, or the box went down to reboot."""
        st = self.get("/update/status")
        if st is None:
            return True
        self.status = st
        return None if st.get("state") in ("receiving", "installing") else True

    def trial_done(self):
        st = self.get("/update/status")
        if st is None:
            return None
        self.status = st
        doc = self.get("/slots")
        if doc is not None:
            self.slots = doc
        return classify(st, doc, self.p["version"])


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type="str", required=True),
            token=dict(type="str", no_log=True),
            version=dict(type="str", required=True),
            timeout=dict(type="int", default=600),
            interval=dict(type="float", default=1.0),
            request_timeout=dict(type="int", default=5),
        ),
        supports_check_mode=True,
    )
    p = module.params
    start = time.monotonic()
    f = Follower(p)

    def result(outcome, reason):
        return dict(changed=False, outcome=outcome, reason=reason, slots=f.slots,
                    update_status=f.status, wait_s=round(time.monotonic() - start, 1))

    if module.check_mode:
        module.exit_json(**result("committed", ""))
    poll(f.install_done, p["timeout"], p["interval"])
    if f.status.get("state") in ("failed", "interrupted"):
        res = result("install_failed", f.status.get("error") or "install failed")
        module.fail_json(msg="install failed: %s" % res["reason"], **res)
    left = max(1, p["timeout"] - (time.monotonic() - start))
    verdict = poll(f.trial_done, left, p["interval"])
    if verdict is None:
        o = trial_outcome(f.status) or {}
        seen = "last seen: update %s, trial %s, booted %s" % (
            f.status.get("state"), o.get("state"), f.slots.get("booted"))
        why = "no trial outcome within %d s (%s; %s)" % (p["timeout"], f.last_error or "answering", seen)
        module.fail_json(msg=why, **result("timeout", why))
    outcome, reason = verdict
    if outcome != "committed":
        slot = (trial_outcome(f.status) or {}).get("slot")
        module.fail_json(msg="trial of %s on slot %s rolled back: %s" % (p["version"], slot, reason),
                         **result(outcome, reason))
    module.exit_json(**result(outcome, reason))


if __name__ == "__main__":
    main()
