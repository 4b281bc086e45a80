"""Checks of role ``base``: essentials installed, apt waits for its lock, dpkg clean, extra CAs trusted."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dlrig.verify.hints import HINT_MARK, HINT_SEP

APPLY = "run `dlrig apply INVENTORY --roles base`"
APT_CONF = "/etc/apt/apt.conf.d/90dlrig"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def _msg(reason: str, hint: str) -> str:
    return f"{reason}{HINT_SEP}{HINT_MARK}{hint}"


def test_essential_packages_installed(host, settings):
    wanted = list(settings.get("base_packages") or []) + list(settings.get("base_extra_packages") or [])
    res = host.run("dpkg-query -W -f '${db:Status-Abbrev} ${Package}\\n' 2>/dev/null")
    installed = {line.split()[1].split(":")[0] for line in res.stdout.splitlines()
                 if line.startswith("ii") and len(line.split()) >= 2}
    missing = [p for p in wanted if p not in installed]
    assert not missing, _msg(f"not installed: {', '.join(missing)}", APPLY)


def test_apt_waits_for_dpkg_lock(host, settings):
    conf = host.file(APT_CONF)
    assert conf.exists, _msg(f"{APT_CONF} is missing (apt fails at once while unattended-upgrades "
                             "holds the dpkg lock)", APPLY)
    m = re.search(r'DPkg::Lock::Timeout\s+"(\d+)"', conf.content_string)
    want = settings.get("apt_lock_timeout", 600)
    assert m, _msg(f"{APT_CONF} has no DPkg::Lock::Timeout line", APPLY)
    assert int(m.group(1)) == int(want), _msg(
        f"{APT_CONF} says DPkg::Lock::Timeout {m.group(1)}, apt_lock_timeout is {want}", APPLY)


def test_dpkg_audit_clean(host):
    res = host.run("dpkg --audit 2>&1")
    lines = [x for x in res.stdout.splitlines() if x.strip()]
    assert not lines, _msg("dpkg --audit: " + " ".join(lines[:3])[:300],
                           "finish the interrupted install: `sudo dpkg --configure -a` (or " + APPLY + ")")


def _pem_bodies(text: str) -> list[str]:
    return ["".join(b.split()) for b in re.findall(
        r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", text, re.S)]


def test_extra_ca_certificates_trusted(host, settings):
    pems = list(settings.get("extra_ca_certificates") or [])
    if not pems:
        pytest.skip("no extra_ca_certificates set")
    bundle = "".join(host.file(CA_BUNDLE).content_string.split()) if host.file(CA_BUNDLE).exists else ""
    missing = []
    for pem in pems:
        path = Path(pem).expanduser()
        if not path.is_file():
            missing.append(f"{pem} (not on this machine)")
            continue
        if any(body not in bundle for body in _pem_bodies(path.read_text(errors="replace"))):
            missing.append(path.name)
    assert not missing, _msg(f"not in the host's trust store {CA_BUNDLE}: {', '.join(missing)}", APPLY)
