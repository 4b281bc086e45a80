"""The verified no-op over real SSH on a Debian 12 test host (dlrig.engine.noop): after a run that
changed nothing, ``plan``/``apply`` answer from one SSH command without pyinfra and print exactly
what pyinfra printed; a drifted file, package or unit on the host, a changed setting and a changed
local file each make it miss, and the plan shows the change."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys

import pytest

from dlrig.engine.noop import HIT_NOTE
from dlrig.testing import write_inventory

pytestmark = pytest.mark.hosts

ROLES = "base,ssh,power"
MACHINE_CAS = sorted(glob.glob("/usr/local/share/ca-certificates/*.crt"))


def test_noop_fast_path_hits_when_unchanged_and_misses_on_any_drift(make_hosts, tmp_path):
    if not MACHINE_CAS:
        pytest.skip("no CA certificate on this machine to upload")
    (h,) = make_hosts(1)
    pem = tmp_path / "ca.crt"
    shutil.copy(MACHINE_CAS[0], pem)
    inv = write_inventory([h], tmp_path / "inv.py", data={"extra_ca_certificates": [str(pem)],
                                                          "base_packages": ["jq"]})
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"))

    def dlrig(*args: str) -> tuple[dict, bool]:
        r = subprocess.run([sys.executable, "-m", "dlrig", *args, str(inv), "--roles", ROLES, "--json"],
                           capture_output=True, text=True, timeout=900, env=env)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
        mode = "plan" if args[0] == "plan" else "apply"
        return json.loads(r.stdout), HIT_NOTE.format(mode=mode) in r.stderr

    def changed_roles(plan: dict) -> set[str]:
        return {c["role"] for c in plan["changes"]}

    def until_hit(*args: str) -> tuple[dict, dict]:
        """Re-run until the fast path answers: (pyinfra's last report, the fast path's). A file read for
        the first time since it was written gets a new access time (relatime), which the File fact
        shows: the first run after a change may be refused a record; the next one gets it."""
        full, hit = dlrig(*args)
        assert not hit
        for _ in range(2):
            got, hit = dlrig(*args)
            if hit:
                return full, got
            full = got
        raise AssertionError(f"no fast path after 3 runs of {args} that changed nothing: {full}")

    first, hit = dlrig("apply", "--yes")
    assert not hit and first["hosts"][h.name]["changed"] > 0
    full, fast = until_hit("apply", "--yes")
    assert full["hosts"][h.name]["changed"] == 0 and full["ok"]
    assert fast == full  # the same report, to the operation count

    full_plan, fast_plan = until_hit("plan")
    assert full_plan["status"] == {h.name: "converged"} and full_plan["changes"] == []
    assert fast_plan == full_plan  # conditional steps included
    slow_plan, hit = dlrig("plan", "--no-fast")
    assert not hit and slow_plan == full_plan

    # A changed setting: another deploy, so pyinfra runs (and shows the change).
    other, hit = dlrig("plan", "--data", "apt_lock_timeout=601")
    assert not hit and changed_roles(other) == {"base"}

    drifts = {
        "ssh": "echo '# drift' >> /etc/ssh/sshd_config.d/00-dlrig.conf",  # a file
        "base": "DEBIAN_FRONTEND=noninteractive apt-get remove -y -q jq",  # a package
        "power": "rm /etc/systemd/system/sleep.target",  # a unit unmasked
    }
    for role, command in drifts.items():
        h.ssh(f"sudo sh -c {command!r}")
        drifted, hit = dlrig("plan")
        assert not hit and role in changed_roles(drifted), (role, drifted)
        fixed, hit = dlrig("apply", "--yes")
        assert not hit and fixed["hosts"][h.name]["changed"] > 0
        full_again, fast_again = until_hit("plan")
        assert fast_again == full_again == full_plan

    # The local file the run uploads changed: the plan shows the upload.
    pem.write_text(pem.read_text() + "\n# a comment outside the certificate\n")
    local, hit = dlrig("plan")
    assert not hit and any(c["operation"].startswith("trust CA certificate") for c in local["changes"])
