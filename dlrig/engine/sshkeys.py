"""OpenSSH ``authorized_keys`` lines, parsed for real before dlrig installs them.

The blob is checked by OpenSSH's own parser on the controller (``ssh-keygen -l -f``: it refuses a
type label that does not match the blob, a truncated blob, trailing junk); the options are parsed
here against the option names sshd knows (sshd(8), AUTHORIZED_KEYS FILE FORMAT) and judged:
an expired ``expiry-time``, ``cert-authority`` or a forced ``command`` make a key useless as a way
in; ``from=`` is matched against the controller's address on the host (:func:`from_allows`).

Messages name a key by its position, comment and fingerprint, never by its blob.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "sk-ssh-ed25519@openssh.com",
)

# The signature algorithms sshd's PubkeyAcceptedAlgorithms lists for each key type (an RSA key
# signs with rsa-sha2-512/256 or the old ssh-rsa).
ALGORITHMS = {
    "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"),
}

# sshd(8) "AUTHORIZED_KEYS FILE FORMAT" (OpenSSH 9.2): flags and options taking a value.
FLAG_OPTIONS = {
    "agent-forwarding", "cert-authority", "no-agent-forwarding", "no-port-forwarding", "no-pty",
    "no-user-rc", "no-x11-forwarding", "port-forwarding", "pty", "restrict", "user-rc",
    "x11-forwarding", "no-touch-required", "verify-required",
}
VALUE_OPTIONS = {"command", "environment", "expiry-time", "from", "permitlisten", "permitopen",
                 "principals", "tunnel"}


class KeyProblem(ValueError):
    """One key that cannot be installed; the message names it without its blob."""


@dataclass
class AuthorizedKey:
    index: int  # 1-based position in ssh_authorized_keys
    type: str
    comment: str
    fingerprint: str = ""
    options: dict[str, list[str]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        what = f"{self.comment!r}" if self.comment else "no comment"
        return f"key {self.index} ({what}, {self.fingerprint or self.type})"

    def algorithms(self) -> tuple[str, ...]:
        return ALGORITHMS.get(self.type, (self.type,))


def _split_options(text: str) -> list[str]:
    """``a,b="x,y",c`` -> ["a", 'b="x,y"', "c"], honouring quotes and backslash escapes."""
    out, cur, quoted, i = [], "", False, 0
    while i < len(text):
        c = text[i]
        if c == "\\" and quoted and i + 1 < len(text):
            cur += text[i : i + 2]
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        if c == "," and not quoted:
            out.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    if quoted:
        raise ValueError("an option's quotes are not closed")
    out.append(cur)
    return out


def _first_token(line: str) -> tuple[str, str]:
    """The options field (up to the first blank outside quotes) and the rest."""
    quoted = False
    for i, c in enumerate(line):
        if c == '"':
            quoted = not quoted
        elif c in " \t" and not quoted:
            return line[:i], line[i:].lstrip()
    return line, ""


def _comment_of(line: str) -> str:
    """A comment to name a key by, even a broken one: the text after a base64 blob, if any."""
    m = re.search(r"\sAAAA[0-9A-Za-z+/=]*\s+(.+)$", line)
    return m.group(1).strip()[:60] if m else ""


def parse_line(line: str, index: int = 1, now: float | None = None) -> AuthorizedKey:
    """One ``authorized_keys`` line -> :class:`AuthorizedKey`, or :class:`KeyProblem` saying why not."""
    if not isinstance(line, str):
        raise KeyProblem(f"key {index}: a {type(line).__name__}, not a string; give one OpenSSH public key line per item")
    name = f"key {index}" + (f" ({_comment_of(line)!r})" if _comment_of(line) else "")
    if "\n" in line or "\r" in line or "\0" in line:
        raise KeyProblem(f"{name}: give one OpenSSH public key line per item")
    line = line.strip()
    first, rest = _first_token(line)
    options: dict[str, list[str]] = {}
    if first not in KEY_TYPES:
        if not rest or _first_token(rest)[0] not in KEY_TYPES:
            label = first if len(first) <= 40 and re.fullmatch(r"[\w@.-]+", first) else "its first field"
            raise KeyProblem(f"{name}: {label!r} is not an OpenSSH public key type (one of "
                             f"{', '.join(KEY_TYPES)}); paste the line of your id_*.pub file")
        try:
            parts = _split_options(first)
        except ValueError as e:
            raise KeyProblem(f"{name}: {e}") from None
        for opt in parts:
            key, eq, value = opt.partition("=")
            key = key.lower()
            if key in FLAG_OPTIONS and not eq:
                options.setdefault(key, [])
            elif key in VALUE_OPTIONS and eq and len(value) >= 2 and value[0] == value[-1] == '"':
                options.setdefault(key, []).append(value[1:-1].replace('\\"', '"'))
            else:
                shown = key if re.fullmatch(r"[\w-]{1,30}", key) else "an option"
                raise KeyProblem(f"{name}: option {shown!r} is not one sshd knows "
                                 "(see sshd(8), AUTHORIZED_KEYS FILE FORMAT)")
        line = rest
    fields = line.split(None, 2)
    if len(fields) < 2:
        raise KeyProblem(f"{name}: the key itself (base64 after {fields[0]!r}) is missing")
    ktype, blob = fields[0], fields[1]
    comment = fields[2].strip() if len(fields) > 2 else ""
    key = AuthorizedKey(index, ktype, comment[:60], options=options)
    key.fingerprint = _fingerprint(ktype, blob, key)
    _judge_options(key, now if now is not None else time.time())
    return key


def _fingerprint(ktype: str, blob: str, key: AuthorizedKey) -> str:
    """OpenSSH's own parser: the SHA256 fingerprint, or KeyProblem when the blob is not a ``ktype`` key."""
    fd, path = tempfile.mkstemp(prefix="dlrig-key-", suffix=".pub")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(f"{ktype} {blob}\n")
        try:
            r = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", path],
                               capture_output=True, text=True, timeout=20)
        except FileNotFoundError:
            raise KeyProblem("ssh-keygen not found on this machine: install openssh-client, dlrig "
                             "checks every key with it") from None
    finally:
        os.unlink(path)
    parts = r.stdout.split()
    if r.returncode != 0 or len(parts) < 2 or not parts[1].startswith("SHA256:"):
        raise KeyProblem(f"{key.label}: not a valid {ktype} public key (the base64 part is damaged, "
                         "truncated, or belongs to another key type); paste the whole line of your "
                         "id_*.pub file again")
    return parts[1]


def _parse_expiry(text: str) -> float | None:
    """sshd's expiry-time: YYYYMMDD[HHMM[SS]], local time, or with a trailing Z, UTC."""
    utc = text.endswith("Z")
    digits = text[:-1] if utc else text
    fmt = {8: "%Y%m%d", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}.get(len(digits))
    if not fmt or not digits.isdigit():
        return None
    try:
        st = time.strptime(digits, fmt)
    except ValueError:
        return None
    import calendar

    return calendar.timegm(st) if utc else time.mktime(st)


def _judge_options(key: AuthorizedKey, now: float) -> None:
    for value in key.options.get("expiry-time", []):
        when = _parse_expiry(value)
        if when is None:
            raise KeyProblem(f"{key.label}: expiry-time={value!r} is not YYYYMMDD[HHMM[SS]][Z]")
        if when <= now:
            raise KeyProblem(f"{key.label}: expiry-time={value} has passed: sshd would refuse this key; "
                             "remove the option or give a later date")
    if "cert-authority" in key.options:
        raise KeyProblem(f"{key.label}: cert-authority makes it a CA for certificates, not a key "
                         "you can log in with; list your own public key")
    if "command" in key.options:
        raise KeyProblem(f"{key.label}: command=... forces one command: dlrig could neither log in "
                         "with it nor prove access; remove the option")
    for pattern in key.options.get("from", []):
        try:
            _from_patterns(pattern)
        except ValueError as e:
            raise KeyProblem(f"{key.label}: from={pattern!r}: {e}") from None


def _from_patterns(text: str) -> list[tuple[bool, str]]:
    out = []
    for p in text.split(","):
        p = p.strip()
        neg = p.startswith("!")
        p = p[1:] if neg else p
        if not p or not re.fullmatch(r"[\w.:*?/@-]+", p):
            raise ValueError(f"{p!r} is not a host pattern")
        if "/" in p:
            ipaddress.ip_network(p, strict=False)
        out.append((neg, p))
    return out


def from_allows(text: str, addr: str) -> bool:
    """Whether sshd's ``from="..."`` pattern list admits a client at ``addr``.

    As sshd matches it without UseDNS (Debian's default): against the address; a negated match
    refuses, else any positive match admits. Host-name patterns never match an address.
    """
    ip = ipaddress.ip_address(addr)
    admitted = False
    for neg, p in _from_patterns(text):
        if "/" in p:
            hit = ip in ipaddress.ip_network(p, strict=False)
        else:
            hit = fnmatch.fnmatchcase(addr, p)
        if hit and neg:
            return False
        admitted = admitted or hit
    return admitted


def parse_keys(lines: list, now: float | None = None) -> list[AuthorizedKey]:
    """Every line parsed; :class:`KeyProblem` naming each bad one (joined by '; ')."""
    keys, problems = [], []
    for i, line in enumerate(lines, 1):
        try:
            keys.append(parse_line(line, i, now))
        except KeyProblem as e:
            problems.append(str(e))
    if problems:
        raise KeyProblem("; ".join(problems))
    return keys
