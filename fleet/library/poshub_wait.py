#!/usr/bin/python
"""Ansible module: wait for a poshub box to finish an update and report the trial outcome."""

DOCUMENTATION = r"""
module: poshub_wait
short_description: Follow an update on a poshub box until its trial is committed or rolled back
description:
  - Polls GET /update/status until the install is done (or the box goes down to reboot), then
    GET /slots until the box has rebooted (new boot id) and its trial has ended.
  - Committed means the booted slot is the bootloader default, is good, and holds the version.
  - Rolled back means the trial ended without that (the slot that held the version is bad, with
    the supervisor's reason). When /update/status carries an C(outcome) (newer supervisors),
    its result and reason are used as well.
options:
  url: {description: Base URL of the update API, required: true, type: str}
  token: {description: Bearer token, type: str, no_log: true}
  version: {description: Version the box must commit, required: true, type: str}
  boot_id: {description: Boot id before the upload (a reboot changes it), required: true, type: str}
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


def status_outcome(st):
    """(result, reason) from a newer supervisor's /update/status `outcome`, or None."""
    o = (st or {}).get("outcome")
    if not o:
        return None
    if isinstance(o, dict):
        result = str(o.get("result") or o.get("state") or o.get("outcome") or "")
        return result, str(o.get("reason") or o.get("error") or "")
    return str(o), str((st or {}).get("reason") or "")


def classify(doc, version, boot_id):
    """('committed'|'rolled_back', reason) once the trial after the reboot has ended."""
    if not doc or doc.get("bootId") in (None, boot_id) or doc.get("trial"):
        return None
    slots = doc.get("slots") or {}
    booted = doc.get("booted")
    cur = slots.get(booted) or {}
    if cur.get("version") == version and cur.get("state") == "good":
        # The commit writes the slot store first, then the bootloader default: between the two
        # the trial is over but not yet committed to the bootloader.
        return ("committed", "") if booted == doc.get("default") else None
    for name, s in sorted(slots.items()):
        if (s or {}).get("version") == version and s.get("state") == "bad":
            return "rolled_back", "slot %s (%s) marked bad: %s" % (name, version, s.get("reason"))
    return "rolled_back", "trial ended on slot %s (%s, %s) instead of %s" % (
        booted, cur.get("version"), cur.get("state"), version)


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
        doc = self.get("/slots")
        if doc is None:
            return None
        self.slots = doc
        st = self.get("/update/status")
        if st is not None:
            self.status = st
        verdict = classify(doc, self.p["version"], self.p["boot_id"])
        newer = status_outcome(self.status) if verdict else None
        if verdict and newer and "roll" in newer[0] and newer[1]:
            return "rolled_back", newer[1]
        return verdict


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type="str", required=True),
            token=dict(type="str", no_log=True),
            version=dict(type="str", required=True),
            boot_id=dict(type="str", required=True),
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
    if f.status.get("state") == "failed":
        res = result("install_failed", f.status.get("error") or "install failed")
        module.fail_json(msg="install failed: %s" % res["reason"], **res)
    left = max(1, p["timeout"] - (time.monotonic() - start))
    verdict = poll(f.trial_done, left, p["interval"])
    if verdict is None:
        seen = "last seen: booted %s, trial %s" % (f.slots.get("booted"), f.slots.get("trial"))
        why = "no trial outcome within %d s (%s; %s)" % (p["timeout"], f.last_error or "answering", seen)
        module.fail_json(msg=why, **result("timeout", why))
    outcome, reason = verdict
    if outcome != "committed":
        module.fail_json(msg="trial of %s rolled back: %s" % (p["version"], reason), **result(outcome, reason))
    module.exit_json(**result(outcome, reason))


if __name__ == "__main__":
    main()
