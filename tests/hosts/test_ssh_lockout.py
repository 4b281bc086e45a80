"""Lock-out corpus for role ssh on a real Debian 12 test host over real SSH (issue 11).

Every case runs ``dlrig apply --roles ssh`` twice over: once logged in by key (``ssh_key``),
once by password (``ssh_password``, no key). Each case is refused before any change (exit != 0,
the drop-in untouched), applied, or applied then undone (the post-reload proof failed and the
previous drop-in came back byte for byte). Whatever the outcome, a brand-new SSH connection by
the same method must still get ``sudo -n true``: that is what "no lock-out" means here.

One host serves the whole corpus (cases are reset in between through the host's root on this
machine), to keep the load low. ``DLRIG_LOCKOUT_TABLE=path`` writes the corpus table there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import paramiko
import pytest

from dlrig.roles.ssh import RELOAD, _sh
from dlrig.testing import HostPool

pytestmark = pytest.mark.hosts

PASSWORD = "dlrig-lockout-pw-7"
DROPIN = "etc/ssh/sshd_config.d/00-dlrig.conf"
TABLE: list[tuple[str, str, str, str]] = []

# (case id, settings, {method: expected}) with expected one of "refused", "refused-early" (exit 2
# before connecting), "applied", "restored". "{U}" in strings is the login user.
CASES = [
    # --- ssh_extra_config lines that would deny the connecting login ---------------------------
    ("extra: PubkeyAuthentication no", {"ssh_extra_config": ["PubkeyAuthentication no"]},
     {"key": "refused", "password": "applied"}),
    ("extra: PasswordAuthentication no", {"ssh_extra_config": ["PasswordAuthentication no"]},
     {"key": "applied", "password": "refused"}),
    ("extra: AllowUsers someone-else", {"ssh_extra_config": ["AllowUsers alice bob"]},
     {"key": "refused", "password": "refused"}),
    ("extra: AllowUsers {U}@10.0.0.0/8", {"ssh_extra_config": ["AllowUsers {U}@10.0.0.0/8"]},
     {"key": "refused", "password": "refused"}),
    ("extra: DenyUsers U", {"ssh_extra_config": ["DenyUsers {U}"]}, {"key": "refused", "password": "refused"}),
    ("extra: AllowGroups wheel", {"ssh_extra_config": ["AllowGroups wheel"]},
     {"key": "refused", "password": "refused"}),
    ("extra: DenyGroups U", {"ssh_extra_config": ["DenyGroups {U}"]}, {"key": "refused", "password": "refused"}),
    ("extra: AuthenticationMethods publickey,password",
     {"ssh_extra_config": ["AuthenticationMethods publickey,password"]}, {"key": "refused", "password": "refused"}),
    ("extra: AuthorizedKeysFile elsewhere", {"ssh_extra_config": ["AuthorizedKeysFile /etc/ssh/keys/%u"]},
     {"key": "refused", "password": "applied"}),
    ("extra: ForceCommand", {"ssh_extra_config": ["ForceCommand /bin/true"]},
     {"key": "refused", "password": "refused"}),
    ("extra: ChrootDirectory", {"ssh_extra_config": ["ChrootDirectory /var/empty"]},
     {"key": "refused", "password": "refused"}),
    ("extra: MaxSessions 0", {"ssh_extra_config": ["MaxSessions 0"]}, {"key": "refused", "password": "refused"}),
    ("extra: ListenAddress elsewhere", {"ssh_extra_config": ["ListenAddress 127.254.254.254"]},
     {"key": "refused", "password": "refused"}),
    ("extra: PubkeyAcceptedAlgorithms rsa only", {"ssh_extra_config": ["PubkeyAcceptedAlgorithms rsa-sha2-512"]},
     {"key": "refused", "password": "applied"}),
    ("extra: Match User U / PubkeyAuthentication no",
     {"ssh_extra_config": ["Match User {U}", "PubkeyAuthentication no"]}, {"key": "refused", "password": "applied"}),
    ("extra: Match Address / DenyUsers *",
     {"ssh_extra_config": ["Match Address 127.0.0.0/8", "DenyUsers *"]}, {"key": "refused", "password": "refused"}),
    ("extra: harmless X11Forwarding no", {"ssh_extra_config": ["X11Forwarding no"]},
     {"key": "applied", "password": "applied"}),
    ("extra: AllowUsers U root", {"ssh_extra_config": ["AllowUsers {U} root"]},
     {"key": "applied", "password": "applied"}),
    # --- password off: only with a key sshd accepts (bad keys refused by name) -----------------
    ("keys: truncated blob, password off", {"ssh_authorized_keys": ["BAD:truncated"], "ssh_password_authentication": False},
     {"key": "refused-early", "password": "refused-early"}),
    ("keys: mislabelled type, password off", {"ssh_authorized_keys": ["BAD:mislabel"], "ssh_password_authentication": False},
     {"key": "refused-early", "password": "refused-early"}),
    ("keys: expired expiry-time", {"ssh_authorized_keys": ["BAD:expired"], "ssh_password_authentication": False},
     {"key": "refused-early", "password": "refused-early"}),
    ("keys: forced command", {"ssh_authorized_keys": ["BAD:command"]},
     {"key": "refused-early", "password": "refused-early"}),
    ("keys: dss, sshd does not accept it", {"ssh_authorized_keys": ["NEW:dsa"], "ssh_password_authentication": False},
     {"key": "refused", "password": "refused"}),
    ("keys: from= excludes the controller", {"ssh_authorized_keys": ["FROM:10.9.9.9"], "ssh_password_authentication": False},
     {"key": "refused", "password": "refused"}),
    ("keys: good ed25519, password off", {"ssh_authorized_keys": ["NEW:ed25519"], "ssh_password_authentication": False},
     {"key": "applied", "password": "refused"}),
    ("keys: good ecdsa, default password", {"ssh_authorized_keys": ["NEW:ecdsa"]},
     {"key": "applied", "password": "applied"}),
    # --- workstation_user is not the login user ------------------------------------------------
    ("owner alice without key, password off", {"workstation_user": "alice", "ssh_password_authentication": False},
     {"key": "refused", "password": "refused-early"}),
    ("owner alice with key, password off", {"workstation_user": "alice", "ssh_authorized_keys": ["NEW:ed25519"],
                                            "ssh_password_authentication": False},
     {"key": "applied", "password": "refused"}),
    ("owner alice with key, default password", {"workstation_user": "alice", "ssh_authorized_keys": ["NEW:rsa"]},
     {"key": "applied", "password": "applied"}),
    # --- passes the config proof, breaks the login: the new-login proof restores ---------------
    ("proof: SetEnv PATH breaks sudo", {"ssh_extra_config": ["SetEnv PATH=/nonexistent"]},
     {"key": "restored", "password": "restored"}),
    ("proof: SetEnv PATH over an earlier drop-in", {"ssh_extra_config": ["SetEnv PATH=/nonexistent"], "_before": True},
     {"key": "restored", "password": "restored"}),
    ("proof: RevokedKeys holds the login key", {"ssh_extra_config": ["RevokedKeys /etc/ssh/dlrig-revoked"]},
     {"key": "restored", "password": "applied"}),
]


@pytest.fixture(scope="module")
def host(golden_image, tmp_path_factory):
    pool = HostPool(tmp_path_factory.mktemp("lockout"), golden_image)
    (h,) = pool.start_many(1)
    h.ssh(f"echo '{h.user}:{PASSWORD}' | sudo -n chpasswd && sudo -n useradd -m -s /bin/bash alice")
    h.pristine_keys = (h.root / f"home/{h.user}/.ssh/authorized_keys").read_bytes()
    d = tmp_path_factory.mktemp("keys")
    h.newkeys = {}
    for t in ("ed25519", "ecdsa", "rsa", "dsa"):
        subprocess.run(["ssh-keygen", "-q", "-t", t, "-N", "", "-C", f"corpus-{t}", "-f", str(d / t)], check=True)
        h.newkeys[t] = (d / f"{t}.pub").read_text().strip()
    yield h
    pool.stop_all()
    if os.environ.get("DLRIG_LOCKOUT_TABLE"):
        Path(os.environ["DLRIG_LOCKOUT_TABLE"]).write_text(
            "| case | login | expected | result |\n|---|---|---|---|\n"
            + "".join(f"| {c} | {m} | {e} | {r} |\n" for c, m, e, r in TABLE))


def _connect(h, method: str) -> paramiko.SSHClient:
    c = paramiko.SSHClient()
    c.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    auth = {"key_filename": str(h.key_path)} if method == "key" else {"password": PASSWORD}
    c.connect(h.address, port=h.port, username=h.user, look_for_keys=False, allow_agent=False,
              timeout=10, banner_timeout=10, auth_timeout=10, **auth)
    return c


def new_login_sudo(h, method: str) -> str:
    """'ok' when a brand-new connection by ``method`` runs ``sudo -n true``, else why not."""
    try:
        c = _connect(h, method)
    except Exception as e:
        return f"LOCKED OUT: {type(e).__name__}: {e}"
    try:
        _, out, err = c.exec_command("sudo -n true && echo SUDO-OK", timeout=20)
        got = out.read().decode()
        return "ok" if "SUDO-OK" in got else f"no sudo: {err.read().decode()[:200]}"
    finally:
        c.close()


def _reset(h) -> None:
    """Back to the image's sshd state: no drop-in, only the test key, sshd reloaded."""
    for rel in (DROPIN, "etc/ssh/dlrig-revoked"):
        (h.root / rel).unlink(missing_ok=True)
    subprocess.run(["rm", "-rf", str(h.root / "var/lib/dlrig/ssh")], check=True)
    (h.root / f"home/{h.user}/.ssh/authorized_keys").write_bytes(h.pristine_keys)
    (h.root / "home/alice/.ssh").mkdir(exist_ok=True)
    (h.root / "home/alice/.ssh/authorized_keys").write_text("")
    for method in ("key", "password"):
        try:
            c = _connect(h, method)
        except Exception:
            continue
        # the role's own reload, which waits until sshd has reopened its sockets
        c.exec_command("sudo -n " + _sh(RELOAD, "0"))[1].channel.recv_exit_status()
        c.close()
        break


def _value(h, v):
    if isinstance(v, list):
        return [_value(h, x) for x in v]
    if not isinstance(v, str):
        return v
    if v.startswith("NEW:"):
        return h.newkeys[v[4:]]
    if v.startswith("FROM:"):
        return f'from="{v[5:]}" {h.newkeys["ed25519"]}'
    if v.startswith("BAD:"):
        t, b, c = h.newkeys["ed25519"].split(" ", 2)
        return {"truncated": f"{t} {b[:-12]} {c}", "mislabel": f"ssh-rsa {b} {c}",
                "expired": f'expiry-time="20200101" {t} {b} {c}',
                "command": f'command="/bin/date" {t} {b} {c}'}[v[4:]]
    return v.replace("{U}", h.user)


def _inventory(h, path: Path, method: str, settings: dict) -> Path:
    name, data = h.inventory_entry()
    if method == "password":
        data.pop("ssh_key")
        data["ssh_password"] = PASSWORD
    data.update({k: _value(h, v) for k, v in settings.items() if not k.startswith("_")})
    path.write_text(f"hosts = [({name!r}, {data!r})]\n")
    return path


def _apply(inv: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dlrig.cli", "apply", str(inv), "--roles", "ssh", "--yes"],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("method", ["key", "password"])
@pytest.mark.parametrize("case,settings,expected", CASES, ids=[c[0] for c in CASES])
def test_lockout_corpus(host, tmp_path, case, settings, expected, method):
    h = host
    _reset(h)
    want = expected[method]
    if settings.get("_before"):
        res = _apply(_inventory(h, tmp_path / "before.py", method, {"ssh_extra_config": ["X11Forwarding no"]}))
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    if "RevokedKeys /etc/ssh/dlrig-revoked" in settings.get("ssh_extra_config", []):
        (h.root / "etc/ssh/dlrig-revoked").write_bytes(h.pristine_keys)
    before = (h.root / DROPIN).read_bytes() if (h.root / DROPIN).exists() else None
    before_stat = (h.root / DROPIN).stat() if before is not None else None

    res = _apply(_inventory(h, tmp_path / "inventory.py", method, settings))
    out = res.stdout + res.stderr
    after = (h.root / DROPIN).read_bytes() if (h.root / DROPIN).exists() else None
    access = new_login_sudo(h, method)
    unchanged = after == before and (before_stat is None or (h.root / DROPIN).stat().st_mtime == before_stat.st_mtime)
    if want == "refused-early":
        result = "refused before connecting (exit 2)" if res.returncode == 2 and unchanged else f"exit {res.returncode}"
    elif want == "refused":
        result = "refused before any change" if res.returncode != 0 and "refusing" in out and unchanged \
            else f"exit {res.returncode}"
    elif want == "applied":
        result = "applied, access proven" if res.returncode == 0 else f"exit {res.returncode}"
    else:
        result = "applied, new-login proof failed, old config restored" \
            if res.returncode != 0 and "restored byte for byte" in out and unchanged else f"exit {res.returncode}"
    TABLE.append((case, method, want, f"{result}; new login: {access}"))
    assert not result.startswith("exit"), f"{case} ({method}): expected {want}, got {result}\n{out[-3000:]}"
    if want == "refused-early":
        reason = next((ln for ln in res.stderr.splitlines() if "error:" in ln), "")
        assert "Traceback" not in out and len(res.stderr.strip().splitlines()) <= 2, out[-3000:]
        if "BAD:" in str(settings):
            assert "key 1 (" in reason and h.newkeys["ed25519"].split()[1][:30] not in out, reason
    assert access == "ok", f"{case} ({method}): {access}\n{out[-2000:]}"
    if want != "refused-early":
        assert not any(ln.startswith("Traceback") for ln in out.splitlines()), out[-3000:]
    print(json.dumps({"case": case, "method": method, "result": result, "access": access}))
