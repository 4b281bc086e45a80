"""Custom pyinfra facts that pyinfra itself lacks. One place for each fact.

Over 400 lines for a reason: each fact is a small class (a command and a parser), and keeping
them in one module is what makes "one place for each fact" checkable at a glance.
"""

from __future__ import annotations

from typing import Any

from pyinfra.api import FactBase

# --- reading facts once per host and run -----------------------------------------------------

_MEMO: dict[tuple[int, str], dict[tuple, Any]] = {}


def fact(cls: type[FactBase], *args, **kwargs) -> Any:
    """``host.get_fact(cls, ...)`` for roles: read once per host and run, then from a memo.

    pyinfra 3 runs a fact's command each time it is asked (one SSH round trip each). While pyinfra
    prepares the operations (``StateStage.Prepare``: the deploy file runs, no operation has been
    executed on any host yet) a second read returns what the first did, so the memo (keyed by
    fact class and arguments, ``_sudo`` and the like included) is exact there. In any other stage,
    e.g. a callback that runs while operations execute and may have changed packages or files,
    the fact is read afresh and the host's memo is dropped. Treat the value as read-only.
    """
    from pyinfra import host, state
    from pyinfra.api.state import StateStage
    from pyinfra.context import ctx_state

    memo_key = (id(ctx_state.get()), host.name)
    if state.current_stage != StateStage.Prepare:
        _MEMO.pop(memo_key, None)
        return host.get_fact(cls, *args, **kwargs)
    memo = _MEMO.setdefault(memo_key, {})
    key = (cls, repr(args), repr(sorted(kwargs.items())))
    if key not in memo:
        memo[key] = host.get_fact(cls, *args, **kwargs)
    return memo[key]



class UserHome(FactBase):
    """A user's home directory from the host's passwd (``getent passwd``), or None when unknown."""

    def command(self, user: str) -> str:
        from dlrig.engine.pyenv import home_command

        return home_command(user)

    def process(self, output):
        lines = [line.strip() for line in output if line.strip()]
        return lines[0] if lines else None


class DpkgAudit(FactBase):
    """Lines of ``dpkg --audit``: empty when no package is half-installed or unconfigured."""

    default = list

    def command(self) -> str:
        return "dpkg --audit 2>&1 || true"

    def requires_command(self) -> str:
        return "dpkg"

    def process(self, output):
        return [line for line in output if line.strip()]



class LoginUser(FactBase):
    """Who the connection runs as (``id -un``): pyinfra's ``User`` fact echoes ``$USER``, which is
    unset under cron, ``env -i`` and some sudo setups (and then gave ``/home//``)."""

    def command(self) -> str:
        return "id -un"

    def process(self, output):
        return output[0].strip() if output else None



# ---- remote access and dual boot (roles ssh, firewall, power, dualboot) ----------------------


class SshConnection(FactBase):
    """This connection as sshd sees it, from ``$SSH_CONNECTION``: ``{"client": addr, "server": addr,
    "port": int}`` (``port``: the port sshd accepted it on), or None (not over SSH: @local, @chroot).
    Read it with ``_sudo=False``: sudo drops the variable. The client's port (new for every
    connection) is left out: the fact reads the same on every run (dlrig.engine.noop replays it)."""

    def command(self) -> str:
        return 'set -- ${SSH_CONNECTION:-}; echo "SSHCONN $1 - $3 $4"'

    def process(self, output):
        for line in output:
            parts = line.split()
            if parts and parts[0] == "SSHCONN" and len(parts) == 5 and parts[4].isdigit():
                return {"client": parts[1], "server": parts[3], "port": int(parts[4])}
        return None


# Builds "$T/sshd_config": the main config whose Include reads "$T/d", a copy of sshd_config.d
# holding the candidate drop-in "$S" under the name of "$D" (shared by SshdAccess and role ssh).
SSHD_CANDIDATE_SH = r"""
DIR=$(dirname "$D")
mkdir "$T/d"
for f in "$DIR"/*.conf; do [ -e "$f" ] && cp -p "$f" "$T/d/"; done
cp "$S" "$T/d/$(basename "$D")"
sed -e "s#$DIR/#$T/d/#g" -e "s#^\([[:space:]]*[Ii]nclude[[:space:]]\{1,\}\)sshd_config\.d/#\1$T/d/#" "$M" > "$T/sshd_config"
""".strip()


class SshdAccess(FactBase):
    """sshd's effective settings for a login, today and under a candidate drop-in (``sshd -T -C``).

    ``{"users": {user: {"groups": [...], "current": {...}, "candidate": {...} or None}}, "invalid": msg}``
    (``candidate`` None and ``invalid`` sshd's message: sshd rejects the candidate config, paths
    shown as the real ones); None when sshd is not installed.
    Writes only a private temporary directory under /tmp, removed before it returns.
    """

    def command(self, candidate_b64: str, dropin: str, main: str, client: str, server: str,
                port: int, users: tuple[str, ...]) -> str:
        from shlex import quote

        script = (
            '[ -x /usr/sbin/sshd ] || { echo NOSSHD; exit 0; }\n'
            'B=$1; D=$2; M=$3; A=$4; L=$5; P=$6; shift 6\n'
            'T=$(mktemp -d /tmp/dlrig-sshd.XXXXXX) || exit 1\n'
            "trap 'rm -rf \"$T\"' EXIT\n"
            'printf %s "$B" | base64 -d > "$T/candidate"; S=$T/candidate\n'
            + SSHD_CANDIDATE_SH + "\n"
            'for u in "$@"; do\n'
            '  echo "GROUPS $u $(id -Gn -- "$u" 2>/dev/null | tr " " ,)"\n'
            '  C="user=$u,host=$A,addr=$A,laddr=$L,lport=$P"\n'
            '  /usr/sbin/sshd -T -f "$M" -C "$C" 2>/dev/null | sed "s/^/CUR $u /"\n'
            '  if /usr/sbin/sshd -T -f "$T/sshd_config" -C "$C" > "$T/new" 2> "$T/err"; then\n'
            '    sed "s/^/NEW $u /" "$T/new"; else\n'
            '    echo "INVALID $u $(sed -e "s#$T/d/#$DIR/#g" -e "s#$T/sshd_config#$M#g" "$T/err" | tr "\\n" " ")"; fi\n'
            'done'
        )
        args = [candidate_b64, dropin, main, client, server, str(port), *users]
        return f"sh -c {quote(script)} dlrig-sshd " + " ".join(quote(a) for a in args)

    def process(self, output):
        users: dict = {}
        invalid = None
        for line in output:
            parts = line.rstrip("\n").split(" ", 3)
            if parts[0] == "NOSSHD":
                return None
            if parts[0] == "GROUPS" and len(parts) >= 2:
                u = users.setdefault(parts[1], {"groups": [], "current": {}, "candidate": {}})
                u["groups"] = [g for g in (parts[2] if len(parts) > 2 else "").split(",") if g]
            elif parts[0] in ("CUR", "NEW") and len(parts) >= 3:
                u = users.setdefault(parts[1], {"groups": [], "current": {}, "candidate": {}})
                which = "current" if parts[0] == "CUR" else "candidate"
                if u[which] is None:
                    continue
                key, value = parts[2].lower(), parts[3] if len(parts) > 3 else ""
                u[which][key] = f"{u[which][key]} {value}" if key in u[which] else value
            elif parts[0] == "INVALID" and len(parts) >= 2:
                users.setdefault(parts[1], {"groups": [], "current": {}, "candidate": {}})["candidate"] = None
                invalid = " ".join(parts[2:]).strip() or "sshd -T failed"
        return {"users": users, "invalid": invalid}


class AuthorizedKeyCount(FactBase):
    """Public keys in a user's ~/.ssh/authorized_keys{,2}: an int, or None when no such user."""

    def command(self, user: str) -> str:
        return (
            f"h=$(getent passwd {user} | cut -d: -f6); "
            'if [ -z "$h" ]; then echo NOUSER; else '
            'n=$(cat "$h/.ssh/authorized_keys" "$h/.ssh/authorized_keys2" 2>/dev/null '
            "| grep -cE '^[^#]*(ssh-|ecdsa-|sk-)[A-Za-z0-9@.-]+ +AAAA'); echo \"KEYS ${n:-0}\"; fi"
        )

    def process(self, output):
        for line in output:
            if line.strip() == "NOUSER":
                return None
            if line.startswith("KEYS "):
                return int(line.split()[1])
        return None


class SshdEffectivePorts(FactBase):
    """Ports the sshd config asks for (``sshd -T``), sorted; [] when sshd is not installed."""

    default = list

    def command(self) -> str:
        return "command -v sshd >/dev/null 2>&1 || exit 0; sshd -T 2>/dev/null | awk '$1==\"port\"{print $2}'"

    def process(self, output):
        return sorted({int(x) for x in output if x.strip().isdigit()})


class UfwState(FactBase):
    """ufw as configured on disk: installed, enabled, default policies, added rule commands.

    ``rules`` are the lines of ``ufw show added`` (e.g. ``ufw limit 22/tcp comment 'dlrig ssh'``),
    which lists rules from /etc/ufw/user*.rules whether or not the firewall is running.
    """

    def command(self) -> str:
        return (
            "if ! command -v ufw >/dev/null 2>&1; then echo NOUFW; exit 0; fi; "
            "grep -E '^ENABLED=' /etc/ufw/ufw.conf; "
            "grep -E '^DEFAULT_(INPUT|OUTPUT|FORWARD)_POLICY=' /etc/default/ufw; "
            "ufw show added 2>&1 | grep -E '^ufw ' | sed 's/^/RULE /'"
        )

    def process(self, output):
        state = {"installed": True, "enabled": False, "policy": {}, "rules": []}
        for line in output:
            line = line.strip()
            if line == "NOUFW":
                return {"installed": False, "enabled": False, "policy": {}, "rules": []}
            if line.startswith("ENABLED="):
                state["enabled"] = line.split("=", 1)[1].strip().strip('"').lower() == "yes"
            elif line.startswith("DEFAULT_") and "=" in line:
                key, value = line.split("=", 1)
                state["policy"][key.removeprefix("DEFAULT_").removesuffix("_POLICY").lower()] = (
                    value.strip().strip('"').lower())
            elif line.startswith("RULE "):
                state["rules"].append(line.removeprefix("RULE "))
        return state


class AdjtimeContents(FactBase):
    """/etc/adjtime's lines, or None when the file is missing."""

    def command(self) -> str:
        return "if [ -f /etc/adjtime ]; then cat /etc/adjtime; else echo NOADJTIME; fi"

    def process(self, output):
        if [line.strip() for line in output] == ["NOADJTIME"]:
            return None
        return list(output)


class GrubMenuEntries(FactBase):
    """Titles of the top-level menu entries of /boot/grub/grub.cfg ([] when there is none)."""

    default = list

    def command(self) -> str:
        return ("cat /boot/grub/grub.cfg 2>/dev/null | "
                "sed -n \"s/^menuentry '\\([^']*\\)'.*/\\1/p\" || true")

    def process(self, output):
        return [line.rstrip("\n") for line in output if line.strip()]


class NtfsVolumeState(FactBase):
    """Per UUID: "clean", "hibernated" (Windows Fast Startup), "unclean", "missing" or "unknown".

    Uses ``ntfs-3g.probe --readwrite`` (exit 14: hibernated, 15: unclean unmount), which only
    reads the volume; "unknown" when the tool is not installed yet.
    """

    default = dict

    def command(self, uuids: tuple) -> str:
        parts = []
        for u in uuids:
            parts.append(
                f'd=$(blkid -U {u} 2>/dev/null); if [ -z "$d" ]; then echo "{u} missing"; '
                f'elif ! command -v ntfs-3g.probe >/dev/null 2>&1; then echo "{u} unknown"; '
                f'else ntfs-3g.probe --readwrite "$d" >/dev/null 2>&1; echo "{u} rc$?"; fi'
            )
        return "; ".join(parts) or "true"

    def process(self, output):
        names = {"rc0": "clean", "rc14": "hibernated", "rc15": "unclean"}
        out = {}
        for line in output:
            parts = line.split()
            if len(parts) == 2:
                out[parts[0]] = names.get(parts[1], parts[1] if not parts[1].startswith("rc") else "unknown")
        return out


class NetInterfaceMac(FactBase):
    """The MAC address of a network interface, or None when it does not exist."""

    def command(self, iface: str) -> str:
        return f"cat /sys/class/net/{iface}/address 2>/dev/null || true"

    def process(self, output):
        import re

        for line in output:
            if re.fullmatch(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}", line.strip()):
                return line.strip().lower()
        return None


# --- conda / pytorch / jupyter roles (dlrig.engine.pyenv) ------------------------------------------

class CondaInstall(FactBase):
    """A conda prefix: ``{"exists", "conda", "version", "installer": {"url", "sha256"} | None}``.

    ``version`` comes from ``conda-meta/conda-<version>-*.json`` (no conda run); ``installer``
    from the marker the conda role writes after a verified install.
    """

    def command(self, prefix: str) -> str:
        import shlex

        q = shlex.quote(prefix)
        return (
            f"if [ -e {q} ]; then echo exists; fi; "
            f"if [ -x {q}/bin/conda ]; then echo conda; fi; "
            f"for f in {q}/conda-meta/conda-[0-9]*.json; do [ -e \"$f\" ] && echo \"meta $(basename \"$f\")\"; done; "
            f"if [ -f {q}/conda-meta/dlrig-installer ]; then sed 's/^/marker /' {q}/conda-meta/dlrig-installer; fi; true"
        )

    @staticmethod
    def default():
        return {"exists": False, "conda": False, "version": None, "installer": None}

    def process(self, output):
        out = self.default()
        marker = {}
        for line in output:
            word, _, rest = line.strip().partition(" ")
            if word == "exists":
                out["exists"] = True
            elif word == "conda":
                out["conda"] = True
            elif word == "meta" and rest.startswith("conda-"):
                out["version"] = rest[len("conda-"):].split("-", 1)[0]
            elif word == "marker":
                key, _, value = rest.partition("=")
                marker[key.strip()] = value.strip()
        out["installer"] = marker or None
        return out


_PYENV_SCRIPT = r"""
import json, os, re, sys, importlib.metadata as m, importlib.util as u
d = {}
for dist in m.distributions():
    n = dist.metadata["Name"]
    if n:
        d[re.sub(r"[-_.]+", "-", n).lower()] = dist.version
cuda = None
try:
    spec = u.find_spec("torch")
    if spec and spec.origin:
        t = open(os.path.join(os.path.dirname(spec.origin), "version.py")).read()
        mm = re.search(r"^cuda\b[^=\n]*=\s*(None|['\"]([^'\"]*)['\"])", t, re.M)
        cuda = mm.group(2) if mm and mm.group(2) else None
except Exception:
    pass
print(json.dumps({"python": "%d.%d.%d" % sys.version_info[:3], "dists": d, "torch_cuda": cuda}))
"""


class PythonEnv(FactBase):
    """A Python environment: ``{"python": "3.11.2", "dists": {name: version}, "torch_cuda": "13.0"|None}``.

    None when ``python`` does not exist. Reads metadata only: torch is never imported.
    """

    def command(self, python: str) -> str:
        import shlex

        q = shlex.quote(python)
        return f"if [ -x {q} ]; then {q} -c {shlex.quote(_PYENV_SCRIPT)}; fi; true"

    def process(self, output):
        import json

        text = "\n".join(output).strip()
        if not text:
            return None
        try:
            return json.loads(text.splitlines()[-1])
        except json.JSONDecodeError:
            return None


class SystemdBooted(FactBase):
    """True when systemd runs as PID 1 (``/run/systemd/system`` exists): units can be started.

    False in chroots and containers without systemd, where ``systemctl enable`` still works.
    """

    def command(self) -> str:
        return "if [ -d /run/systemd/system ]; then echo yes; else echo no; fi"

    @staticmethod
    def default():
        return False

    def process(self, output):
        return any(line.strip() == "yes" for line in output)


class UfwRulesPresent(FactBase):
    """Indexes of the given ufw rule commands (``"limit 22/tcp comment 'dlrig ssh'"``) ufw already has.

    Asks ufw itself (``ufw --dry-run RULE`` says "Skipping adding existing rule"), so a rule the
    user typed differently from ufw's own spelling still counts.
    """

    default = list

    def command(self, rules: tuple) -> str:
        if not rules:
            return "true"
        parts = ["command -v ufw >/dev/null 2>&1 || exit 0"]
        for i, rule in enumerate(rules):
            parts.append(f"ufw --dry-run {rule} 2>&1 | grep -q '^Skipping adding existing rule$' "
                         f"&& echo HAVE {i} || true")
        return "; ".join(parts)

    def process(self, output):
        return [int(line.split()[1]) for line in output if line.startswith("HAVE ")]


# --- GPU stack facts (nvidia_driver / cuda / cudnn roles, dlrig doctor) -------------------------


class Lspci(FactBase):
    """``lspci -nn`` lines; without lspci, sysfs lines ``BUS [CLAS]: [vvvv:dddd]`` (dlrig.gpu.table parses both)."""

    default = list

    def command(self) -> str:
        return (
            "if command -v lspci >/dev/null 2>&1; then lspci -nn; else "
            "for d in /sys/bus/pci/devices/*; do [ -r \"$d/class\" ] || continue; "
            "c=$(cat \"$d/class\"); v=$(cat \"$d/vendor\"); p=$(cat \"$d/device\"); "
            "echo \"${d##*/} [$(echo $c | cut -c3-6)]: [$(echo $v | cut -c3-6):$(echo $p | cut -c3-6)]\"; "
            "done; fi"
        )

    def process(self, output):
        return [line for line in output if line.strip()]


class SecureBoot(FactBase):
    """``enabled``, ``disabled``, ``unsupported`` (no EFI / no Secure Boot) or ``unknown``."""

    def command(self) -> str:
        return (
            "if command -v mokutil >/dev/null 2>&1; then mokutil --sb-state 2>&1 || true; "
            "elif [ -d /sys/firmware/efi ]; then f=$(ls /sys/firmware/efi/efivars/SecureBoot-* 2>/dev/null | head -n1); "
            "if [ -n \"$f\" ]; then echo \"efivar SecureBoot $(od -An -t u1 \"$f\" | awk '{print $NF}')\"; "
            "else echo 'EFI variables are not supported'; fi; "
            "else echo 'no EFI: legacy BIOS boot'; fi"
        )

    def process(self, output):
        text = " ".join(output).lower()
        if "secureboot enabled" in text or "efivar secureboot 1" in text:
            return "enabled"
        if "secureboot disabled" in text or "efivar secureboot 0" in text:
            return "disabled"
        if "not support" in text or "no efi" in text or "doesn't support" in text:
            return "unsupported"
        return "unknown"


class NvidiaDriver(FactBase):
    """The loaded NVIDIA kernel module's version (``/proc/driver/nvidia/version``) and ``nvidia-smi``'s GPUs.

    ``{"loaded": "580.95.05" | None, "smi": [csv lines], "smi_error": "..." | None}``.
    """

    def command(self) -> str:
        return (
            "echo \"loaded: $(sed -n 's/.*Kernel Module[^0-9]*\\([0-9][0-9.]*\\).*/\\1/p' /proc/driver/nvidia/version "
            "2>/dev/null | head -n1)\"; "
            "if command -v nvidia-smi >/dev/null 2>&1; then "
            "nvidia-smi --query-gpu=pci.bus_id,name,driver_version,memory.total,compute_cap --format=csv,noheader 2>&1 "
            "| sed 's/^/smi: /' || true; fi"
        )

    def process(self, output):
        loaded, smi, err = None, [], None
        for line in output:
            if line.startswith("loaded:"):
                loaded = line.split(":", 1)[1].strip() or None
            elif line.startswith("smi: "):
                body = line[5:]
                if "," in body and not body.startswith("NVIDIA-SMI has failed"):
                    smi.append(body)
                elif body.strip():
                    err = (err + " " if err else "") + body.strip()
        return {"loaded": loaded, "smi": smi, "smi_error": err}


class AptHeld(FactBase):
    """Packages on hold (``apt-mark showhold``)."""

    default = list

    def command(self) -> str:
        return "apt-mark showhold 2>/dev/null || true"

    def process(self, output):
        return sorted(line.strip() for line in output if line.strip())


class BootId(FactBase):
    """``/proc/sys/kernel/random/boot_id``: equal on two "hosts" that share one running kernel."""

    def command(self) -> str:
        return "cat /proc/sys/kernel/random/boot_id"

    def process(self, output):
        return output[0].strip() if output else None


class MokKey(FactBase):
    """State of a MOK signing key: ``enrolled``, ``pending`` (imported, reboot to confirm),
    ``not-enrolled``, ``no-key`` (the file does not exist yet) or ``no-mokutil``."""

    def command(self, path: str) -> str:
        return (
            f"if [ ! -f {path} ]; then echo no-key; "
            "elif ! command -v mokutil >/dev/null 2>&1; then echo no-mokutil; "
            f"elif mokutil --test-key {path} 2>&1 | grep -q 'already enrolled'; then echo enrolled; "
            f"elif mokutil --list-new 2>/dev/null | grep -q .; then echo pending; "
            "else echo not-enrolled; fi"
        )

    def process(self, output):
        return output[0].strip() if output else "unknown"


class FreeDisk(FactBase):
    """Free space in GB per mount point of interest: ``{"/": 120.5, "/var": ...}``."""

    default = dict

    def command(self) -> str:
        return "df -P -B1 / /var /usr /home 2>/dev/null | tail -n +2"

    def process(self, output):
        out = {}
        for line in output:
            parts = line.split()
            if len(parts) >= 6:
                out[parts[5]] = round(int(parts[3]) / 1e9, 1)
        return out
