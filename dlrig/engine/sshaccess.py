"""Does a login that works today still work under a candidate sshd config?

Decided from sshd's *effective* settings for that very login (``sshd -T -C user=,addr=,...``),
today and under the candidate (fact :class:`dlrig.engine.facts.SshdAccess`). The login works
today, so a setting whose effective value does not change cannot break it; every access-relevant
setting that does change is judged here, and one dlrig cannot judge is refused.
"""

from __future__ import annotations

import fnmatch
import ipaddress

from dlrig.engine.sshkeys import from_allows

PUBLICKEY, PASSWORD = "publickey", "password"

# Settings that matter to key logins only.
KEY_ONLY = ("authorizedkeysfile", "pubkeyacceptedalgorithms", "casignaturealgorithms")
# Settings whose new value must keep every value of the old one (a login uses one of them).
SUPERSET = ("authorizedkeysfile", "pubkeyacceptedalgorithms", "kexalgorithms", "ciphers", "macs",
            "hostkeyalgorithms", "hostkey", "casignaturealgorithms")


def _user_matches(pattern: str, user: str, addr: str) -> bool:
    """An AllowUsers/DenyUsers pattern (``USER`` or ``USER@HOST``) against a login."""
    upat, at, hpat = pattern.partition("@")
    if not fnmatch.fnmatchcase(user, upat):
        return False
    if not at:
        return True
    if "/" in hpat:
        try:
            return ipaddress.ip_address(addr) in ipaddress.ip_network(hpat, strict=False)
        except ValueError:
            return False
    return from_allows(hpat, addr) if not hpat.startswith("!") else False


def judge(user: str, groups: list[str], method: str, addr: str, port: int,
          current: dict[str, str], candidate: dict[str, str]) -> list[tuple[str, str]]:
    """``(keyword, what it would do)`` for every change that would refuse ``user``'s login by ``method``."""
    out: list[tuple[str, str]] = []
    keys = sorted(set(current) | set(candidate))
    for k in keys:
        old, new = current.get(k, ""), candidate.get(k, "")
        if old == new:
            continue
        why = _judge_one(k, old, new, user, groups, method, addr, port)
        if why:
            out.append((k, why))
    return out


def _judge_one(k, old, new, user, groups, method, addr, port) -> str | None:  # noqa: C901 (a table)
    words = new.split()
    if k in KEY_ONLY and method != PUBLICKEY:
        return None  # where keys are looked up, which key types: nothing to a password login
    if k in SUPERSET:
        kept = set(new.replace(",", " ").split())
        lost = [w for w in old.replace(",", " ").split() if w not in kept]
        return f"drops {' '.join(lost)} that logins use today" if lost else None
    if k == "pubkeyauthentication":
        return f"turns key login off for {user}" if method == PUBLICKEY and new != "yes" else None
    if k == "passwordauthentication":
        return (f"turns password login off, and dlrig logs in as {user} with a password"
                if method == PASSWORD and new != "yes" else None)
    if k == "authenticationmethods":
        if new == "any" or any(set(lst.split(",")) == {method} for lst in words):
            return None
        return f"requires {new} for {user}, who logs in with {method} alone"
    if k == "allowusers":
        return None if not words or any(_user_matches(p, user, addr) for p in words) else \
            f"admits only {new}, not {user}"
    if k == "denyusers":
        hit = [p for p in words if _user_matches(p, user, addr)]
        return f"denies {user} (pattern {hit[0]})" if hit else None
    if k == "allowgroups":
        return None if not words or any(fnmatch.fnmatchcase(g, p) for p in words for g in groups) else \
            f"admits only groups {new}; {user} is in {','.join(groups) or 'no group'}"
    if k == "denygroups":
        hit = [p for p in words for g in groups if fnmatch.fnmatchcase(g, p)]
        return f"denies {user}'s group (pattern {hit[0]})" if hit else None
    if k == "forcecommand":
        return None if new in ("", "none") else f"forces the command {new!r}: dlrig's commands and sudo could no longer run"
    if k == "chrootdirectory":
        return None if new in ("", "none") else f"jails {user} in {new}: sudo and the system are out of reach"
    if k == "permitrootlogin":
        if user != "root":
            return None
        ok = {"yes"} if method == PASSWORD else {"yes", "prohibit-password", "without-password"}
        return None if new in ok else f"PermitRootLogin {new} refuses root's {method} login, which dlrig uses"
    if k == "maxsessions":
        return None if new.isdigit() and int(new) >= 1 else "allows no session at all"
    if k == "maxauthtries":
        return None if new.isdigit() and int(new) >= 2 else f"allows {new} authentication attempt(s): too few to log in"
    if k == "logingracetime":
        return None if new.isdigit() and (int(new) == 0 or int(new) >= 10) else f"gives {new}s to log in: too short"
    if k == "usepam":
        return f"switches PAM {new}, which changes how {user}'s password is checked" if method == PASSWORD else None
    if k == "addressfamily":
        fam = "inet6" if ":" in addr else "inet"
        return None if new in ("any", fam) else f"listens on {new} only; this login comes over {fam}"
    if k == "port":
        return None if str(port) in words else f"stops sshd listening on port {port}, which dlrig is connected to"
    if k == "listenaddress":
        wild = {"0.0.0.0", "[::]", "::"}
        hosts = {w.rsplit(":", 1)[0] if w.count(":") == 1 or w.startswith("[") else w for w in words}
        lost = [w for w in old.split() if w not in words]
        return None if not lost or hosts & wild else f"stops sshd listening on {' '.join(lost)}"
    if k in ("authorizedkeyscommand", "authorizedkeyscommanduser"):
        return None if old in ("", "none") else f"changes how {user}'s keys are looked up ({new})"
    if k in ("kbdinteractiveauthentication", "permitemptypasswords", "permittty",
             "permituserenvironment", "disableforwarding", "pubkeyauthoptions", "maxstartups"):
        return None  # none of these stops a key or password login with a command
    return None  # not an access setting


def line_for(keyword: str, lines: list[str]) -> str | None:
    """The config line that sets ``keyword`` (or the Match line whose block does), for the message."""
    match_line = None
    for line in lines:
        word = line.split(None, 1)[0].lower() if line.strip() else ""
        if word == "match":
            match_line = line.strip()
        if word == keyword:
            return line.strip() if match_line is None else f"{line.strip()} (in {match_line!r})"
    return match_line
