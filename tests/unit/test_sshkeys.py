"""The authorized_keys parser against real keys made by ssh-keygen here, and damaged copies of them.

sk-* keys: this machine has no FIDO token, which ``ssh-keygen -t ed25519-sk`` needs, so their
public lines are built from the public part of real ed25519/ecdsa keys in the sk wire format
(string type, key, string application) that OpenSSH's PROTOCOL.u2f defines; ssh-keygen then
parses and fingerprints them like any other.
"""

from __future__ import annotations

import base64
import shutil
import struct
import subprocess
import time

import pytest

from dlrig.engine import sshaccess
from dlrig.engine.sshkeys import KeyProblem, from_allows, parse_keys, parse_line

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen (openssh-client)")


def _s(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def _fields(blob: bytes) -> list[bytes]:
    out = []
    while blob:
        n = struct.unpack(">I", blob[:4])[0]
        out.append(blob[4 : 4 + n])
        blob = blob[4 + n :]
    return out


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("keys")
    out = {}
    for t, extra in (("ed25519", []), ("ecdsa", ["-b", "256"]), ("rsa", ["-b", "2048"]), ("dsa", [])):
        subprocess.run(["ssh-keygen", "-q", "-t", t, *extra, "-N", "", "-C", f"me-{t}@laptop",
                        "-f", str(d / t)], check=True)
        out[t] = (d / f"{t}.pub").read_text().strip()
    ed = base64.b64decode(out["ed25519"].split()[1])
    out["sk-ed25519"] = "sk-ssh-ed25519@openssh.com " + base64.b64encode(
        _s(b"sk-ssh-ed25519@openssh.com") + _s(_fields(ed)[1]) + _s(b"ssh:")).decode() + " me-sk@yubi"
    ec = _fields(base64.b64decode(out["ecdsa"].split()[1]))
    out["sk-ecdsa"] = "sk-ecdsa-sha2-nistp256@openssh.com " + base64.b64encode(
        _s(b"sk-ecdsa-sha2-nistp256@openssh.com") + _s(ec[1]) + _s(ec[2]) + _s(b"ssh:")).decode() + " me-sk2@yubi"
    return out


@pytest.mark.parametrize("kind,label", [("ed25519", "ssh-ed25519"), ("ecdsa", "ecdsa-sha2-nistp256"),
                                        ("rsa", "ssh-rsa"), ("dsa", "ssh-dss"),
                                        ("sk-ed25519", "sk-ssh-ed25519@openssh.com"),
                                        ("sk-ecdsa", "sk-ecdsa-sha2-nistp256@openssh.com")])
def test_real_keys_of_every_type_parse_with_their_fingerprint(keys, kind, label):
    k = parse_line(keys[kind], 1)
    assert k.type == label and k.fingerprint.startswith("SHA256:")
    assert k.comment.startswith("me-")
    assert k.fingerprint in subprocess.run(["ssh-keygen", "-l", "-f", "/dev/stdin"], input=keys[kind],
                                           capture_output=True, text=True).stdout


def _damaged(line: str, how: str) -> str:
    t, b, c = line.split(" ", 2)
    raw = base64.b64decode(b)
    if how == "truncated":
        return f"{t} {base64.b64encode(raw[:-7]).decode()} {c}"
    if how == "trailing":
        return f"{t} {base64.b64encode(raw + b'junk').decode()} {c}"
    if how == "chopped-base64":
        return f"{t} {b[: len(b) // 2]} {c}"
    if how == "junk":
        return f"{t} AAAAjunkjunkjunk {c}"
    if how == "bitflip-in-type":
        return f"{t} {base64.b64encode(raw[:5] + bytes([raw[5] ^ 1]) + raw[6:]).decode()} {c}"
    raise AssertionError(how)


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa", "rsa", "dsa", "sk-ed25519", "sk-ecdsa"])
@pytest.mark.parametrize("how", ["truncated", "trailing", "chopped-base64", "junk", "bitflip-in-type"])
def test_damaged_blobs_are_refused_by_name_without_the_blob(keys, kind, how):
    line = _damaged(keys[kind], how)
    with pytest.raises(KeyProblem) as e:
        parse_line(line, 3)
    msg = str(e.value)
    assert msg.startswith("key 3 (") and "me-" in msg, msg
    assert line.split()[1][:20] not in msg, "the message echoed the key material"


@pytest.mark.parametrize("kind", ["ed25519", "rsa", "sk-ecdsa"])
def test_a_type_label_that_does_not_match_the_blob_is_refused(keys, kind):
    other = "ssh-rsa" if kind != "rsa" else "ssh-ed25519"
    _, b, c = keys[kind].split(" ", 2)
    with pytest.raises(KeyProblem, match="not a valid"):
        parse_line(f"{other} {b} {c}", 1)
    with pytest.raises(KeyProblem, match="is not an OpenSSH public key type"):
        parse_line(f"ssh-ed448 {b} {c}", 1)


def test_options(keys):
    ed = keys["ed25519"]
    assert parse_line(f'from="10.0.0.0/8,!10.1.2.3",no-pty,restrict {ed}').options == {
        "from": ["10.0.0.0/8,!10.1.2.3"], "no-pty": [], "restrict": []}
    future = time.strftime("%Y%m%d", time.gmtime(time.time() + 86400 * 400))
    assert parse_line(f'expiry-time="{future}" {ed}').options["expiry-time"] == [future]
    for bad, why in ((f'expiry-time="20200101" {ed}', "has passed"),
                     (f'expiry-time="2020" {ed}', "is not YYYYMMDD"),
                     (f'cert-authority {ed}', "cert-authority"),
                     (f'command="/bin/false" {ed}', "forces one command"),
                     (f'frm="1.2.3.4" {ed}', "'frm' is not one sshd knows"),
                     (f'from="1.2.3.4 {ed}', "not an OpenSSH public key type"),
                     (f'from="1.2.3.4;rm" {ed}', "is not a host pattern"),
                     ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE=\n", "one OpenSSH public key line")):
        with pytest.raises(KeyProblem, match=why):
            parse_line(bad, 1)
    with pytest.raises(KeyProblem) as e:
        parse_keys([ed, f'expiry-time="20200101" {keys["rsa"]}', 42])
    assert "key 2 ('me-rsa@laptop', SHA256:" in str(e.value) and "key 3: a int" in str(e.value)
    assert "b3BlbnNzaC1rZXktdjE" not in str(e.value)


@pytest.mark.parametrize("pattern,addr,ok", [
    ("127.0.0.1", "127.0.0.1", True), ("127.0.0.*", "127.0.0.9", True), ("10.0.0.0/8", "127.0.0.1", False),
    ("127.0.0.0/8,!127.0.0.5", "127.0.0.5", False), ("127.0.0.0/8,!127.0.0.5", "127.0.0.6", True),
    ("laptop.example", "127.0.0.1", False), ("*", "::1", True),
])
def test_from_patterns_match_like_sshd_without_dns(pattern, addr, ok):
    assert from_allows(pattern, addr) is ok


# --- the access judge: effective config now vs candidate -------------------------------------

CUR = {"pubkeyauthentication": "yes", "passwordauthentication": "yes", "authenticationmethods": "any",
       "permitrootlogin": "no", "port": "22", "authorizedkeysfile": ".ssh/authorized_keys .ssh/authorized_keys2",
       "pubkeyacceptedalgorithms": "ssh-ed25519,rsa-sha2-512", "maxsessions": "10", "forcecommand": "none"}


@pytest.mark.parametrize("change,method,user,refused", [
    ({"pubkeyauthentication": "no"}, "publickey", "admin", True),
    ({"pubkeyauthentication": "no"}, "password", "admin", False),
    ({"passwordauthentication": "no"}, "password", "admin", True),
    ({"passwordauthentication": "no"}, "publickey", "admin", False),
    ({"allowusers": "bob carol"}, "publickey", "admin", True),
    ({"allowusers": "bob adm*@127.0.0.0/8"}, "publickey", "admin", False),
    ({"allowusers": "admin@10.0.0.1"}, "publickey", "admin", True),
    ({"denyusers": "adm?n"}, "publickey", "admin", True),
    ({"allowgroups": "wheel"}, "publickey", "admin", True),
    ({"allowgroups": "sudo"}, "publickey", "admin", False),
    ({"denygroups": "su*"}, "password", "admin", True),
    ({"authenticationmethods": "publickey,password"}, "publickey", "admin", True),
    ({"authenticationmethods": "password publickey"}, "publickey", "admin", False),
    ({"authorizedkeysfile": ".ssh/other"}, "publickey", "admin", True),
    ({"authorizedkeysfile": ".ssh/authorized_keys .ssh/authorized_keys2 /etc/k/%u"}, "publickey", "admin", False),
    ({"forcecommand": "/bin/true"}, "publickey", "admin", True),
    ({"permitrootlogin": "prohibit-password"}, "password", "root", True),
    ({"permitrootlogin": "prohibit-password"}, "publickey", "root", False),
    ({"pubkeyacceptedalgorithms": "rsa-sha2-512"}, "publickey", "admin", True),
    ({"maxsessions": "0"}, "publickey", "admin", True),
    ({"port": "2222"}, "publickey", "admin", True),
    ({"port": "22 2222"}, "publickey", "admin", False),
])
def test_judge(change, method, user, refused):
    got = sshaccess.judge(user, ["admin", "sudo"], method, "127.0.0.1", 22, CUR, {**CUR, **change})
    assert bool(got) is refused, got


def test_line_for_names_the_line_or_its_match_block():
    lines = ["X11Forwarding no", "Match User admin", "  PubkeyAuthentication no"]
    assert sshaccess.line_for("pubkeyauthentication", lines) == "PubkeyAuthentication no (in 'Match User admin')"
    assert sshaccess.line_for("allowusers", lines) == "Match User admin"
    assert sshaccess.line_for("allowusers", ["X11Forwarding no"]) is None
