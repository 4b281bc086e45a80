"""Where the background downloads start in a plan (dlrig.engine.prefetch), on @fake hosts (FAKES:
canned facts, see harness.py): the Miniforge installer starts downloading in base, after the
trust store and before base's apt transaction, and the install step joins the same spool; nothing
starts on a host that has conda. tests/unit/test_prefetch.py runs the scripts; tests/hosts/
test_prefetch_hosts.py runs them on Debian 12 hosts."""

from __future__ import annotations

import json

import pytest

from dlrig.roles.settings.conda import MINIFORGE_SHA256, MINIFORGE_URL
from tests.plans.harness import FACTS, commands, fake_host, plan

HASH = "sha1:0123456789ab:" + "a" * 40
SPOOL = f'"${{TMPDIR:-/tmp}}"/dlrig-miniforge.prefetch-{MINIFORGE_SHA256[:16]}'
START = "start downloading the Miniforge installer (role conda, in the background)"
CONDA_OK = ["exists", "conda", "meta conda-24.11.3-py312_0.json", "marker url=x", f"marker sha256={MINIFORGE_SHA256}"]


def ops_of(roles, facts=None, **data):
    data = {"ssh_user": "alice", "jupyter_password_hash": HASH, "cpu_only": True, **data}
    return plan([fake_host("rig", "ubuntu-24.04", facts=facts, **data)], roles)["rig"]


def position(ops, role, name):
    return next(i for i, o in enumerate(ops) if o["role"] == role and o["operation"] == name)


@pytest.mark.parametrize("cas", [[], ["/etc/hostname"]])
def test_the_installer_starts_in_base_after_the_trust_store_and_before_its_apt_transaction(cas):
    ops = ops_of("base,conda,pytorch,jupyter", extra_ca_certificates=cas)
    start = position(ops, "base", START)
    assert start < position(ops, "base", "essential packages")
    assert start < position(ops, "base", "apt-get update")
    if cas:
        assert position(ops, "base", "update the trust store") < start
    (cmd,) = ops[start]["commands"]
    assert f"d={SPOOL}" in cmd and MINIFORGE_URL in cmd and "setsid sh -c" in cmd
    install = commands([o for o in ops if o["operation"].startswith("install Miniforge")])
    # the install step joins that spool, then checks the checksum before running the installer
    assert f"__pf={SPOOL}" in install
    assert install.index(f"__pf={SPOOL}") < install.index("sha256sum") < install.index('bash "$tmp/installer.sh"')
    assert sum(o["operation"] == START for o in ops) == 1


def test_without_base_nothing_starts_early_and_the_install_step_downloads_itself():
    ops = ops_of("conda,pytorch")
    assert not any(o["operation"] == START for o in ops)
    install = commands([o for o in ops if o["operation"].startswith("install Miniforge")])
    assert f'if [ ! -f "$tmp/installer.sh" ]; then if command -v curl' in install


def test_a_host_with_conda_downloads_nothing():
    ops = ops_of("base,conda,pytorch,jupyter", facts={"dlrig-installer": CONDA_OK})
    assert not any("Miniforge" in o["operation"] for o in ops)


def test_a_cached_installer_is_not_downloaded_again():
    ops = ops_of("base,conda", cache_dir="/srv/cache")
    (cmd,) = next(o for o in ops if o["operation"] == START)["commands"]
    assert f"if [ -e /srv/cache/miniforge/{MINIFORGE_SHA256[:16]}-Miniforge3-" in cmd


def test_only_selected_roles_start_downloads():
    ops = ops_of("base,ssh")
    assert not any(o["operation"] == START for o in ops)


def test_conda_needs_no_curl_transaction_of_its_own_when_base_installs_curl_in_the_same_run():
    canned = json.loads((FACTS / "ubuntu-24.04.json").read_text())["dpkg -l"]
    bare = {"dpkg -l": [line for line in canned if " curl " not in line and " wget " not in line]}
    with_base = ops_of("base,conda", facts=bare)
    assert "curl" in commands([o for o in with_base if o["operation"] == "essential packages"])
    assert not any(o["operation"] == "curl for the installer" for o in with_base)
    alone = ops_of("conda", facts=bare)  # without base: conda installs curl itself
    assert any(o["operation"] == "curl for the installer" for o in alone)
