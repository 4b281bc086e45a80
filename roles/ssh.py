"""Role ``ssh``: OpenSSH server that never locks its owner out.

* The owner's ``ssh_authorized_keys`` are installed first.
* One drop-in, ``/etc/ssh/sshd_config.d/00-dlrig.conf``, sorts first: sshd keeps the first value
  it reads, so it beats ``50-cloud-init.conf`` (which turns password login on) and the main file.
* Lock-out guards: ``preflight`` refuses (exit 2, nothing run) what is wrong on the controller's
  side alone; on the host, before any change, the role raises ``DeployError`` when password login
  would go off while the owner has no authorized key, or root login would go off while pyinfra
  logs in as root.
* Validation: the candidate drop-in is uploaded to a staging path and the *whole* config is tested
  with ``sshd -t -f`` on a temporary copy of the main config whose ``Include`` points at a copy of
  ``sshd_config.d`` holding the candidate. On failure nothing under /etc/ssh is touched and the
  operation fails with sshd's own message (paths shown as the real ones).
* Reload, never restart: ``systemctl reload ssh`` under systemd, else ``SIGHUP`` to the pid in
  ``/run/sshd.pid`` (the listening daemon; it re-executes itself, live sessions are separate
  processes and survive).

Ports (``ssh_port`` is also pyinfra's connection port): the drop-in always lists the port this
very connection came in on (sshd's side of ``$SSH_CONNECTION``), so applying can never move sshd
away from the port pyinfra uses. To move sshd to a new port without a lock-out:

1. ``ssh_extra_ports: [2222]`` and apply (connected on 22): sshd listens on 22 and 2222, the
   firewall role allows both.
2. ``ssh_port: 2222``, ``ssh_extra_ports: []`` and apply (connected on 2222): port 22 goes.

``Port`` lines add up across config files, so a port also set in the main ``sshd_config`` stays.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re

import jinja2
from dlrig.roles import ROOT_OWNED, template
from dlrig.roles.settings.ssh import DEFAULTS
from pyinfra import host
from pyinfra import logger as log
from pyinfra.api import DeployError, deploy
from pyinfra.facts.files import Sha1File
from pyinfra.facts.server import User
from pyinfra.operations import files, python, server

from dlrig.engine import aptget, sshaccess
from dlrig.engine.sudopass import password_for
from dlrig.engine.facts import (
    SSHD_CANDIDATE_SH,
    AuthorizedKeyCount,
    SshConnection,
    SshdAccess,
    fact,
)
from dlrig.engine.hostdata import owner, setting
from dlrig.engine.sshkeys import from_allows, parse_keys

DROPIN = "/etc/ssh/sshd_config.d/00-dlrig.conf"
STAGING = "/var/lib/dlrig/ssh/00-dlrig.conf"
PREVIOUS = "/var/lib/dlrig/ssh/previous.conf"  # the drop-in before this apply, byte for byte
MAIN_CONFIG = "/etc/ssh/sshd_config"


def render_dropin(*, ports: list[int], permit_root_login: str, password_authentication: bool | None,
                  extra_config: list[str]) -> str:
    """The drop-in's text (also used by the unit tests, which run the real ``sshd -t`` on it)."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True)
    with open(template("sshd-dlrig.conf.j2")) as f:
        tmpl = env.from_string(f.read())
    return tmpl.render(ports=ports, permit_root_login=permit_root_login,
                       password_authentication=password_authentication, extra_config=extra_config)


# $1 staging file, $2 drop-in, $3 main config, $4 expected passwordauthentication ("" = any),
# $5 where the drop-in in place now is kept (byte for byte, for RESTORE; "$5.absent" if none).
VALIDATE_AND_INSTALL = r"""
S=$1; D=$2; M=$3; WANT=$4; P=$5
T=$(mktemp -d /tmp/dlrig-sshd.XXXXXX) || exit 1
trap 'rm -rf "$T"' EXIT
""".strip() + "\n" + SSHD_CANDIDATE_SH + "\n" + r"""
if ! out=$(/usr/sbin/sshd -t -f "$T/sshd_config" 2>&1); then
    echo "sshd -t rejected the new config; $D and $M are unchanged:" >&2
    printf '%s\n' "$out" | sed -e "s#$T/d/#$DIR/#g" -e "s#$T/sshd_config#$M#g" >&2
    exit 1
fi
if [ -n "$WANT" ]; then
    got=$(/usr/sbin/sshd -T -f "$T/sshd_config" 2>/dev/null | awk '$1=="passwordauthentication"{print $2}')
    if [ "$got" != "$WANT" ]; then
        echo "sshd would still use PasswordAuthentication $got (wanted $WANT): something in $M is read before $D (a Match block or no Include of $DIR); nothing changed" >&2
        exit 1
    fi
fi
rm -f "$P" "$P.absent"
if [ -e "$D" ]; then cp -p "$D" "$P" || exit 1; else : > "$P.absent"; fi
install -m 644 -o root -g root "$S" "$D.dlrig-new" && mv -f "$D.dlrig-new" "$D"
""".strip()

# $1: 1 when the set of ports changed (socket-activated sshd needs its socket regenerated).
RELOAD = r"""
socks() { ls -l "/proc/$1/fd" 2>/dev/null | grep -o 'socket:\[[0-9]*\]' | sort | tr '\n' ' '; }
# sshd re-executes itself on SIGHUP and opens new listening sockets: wait for them, so that a
# new login afterwards is served by the new config, never by the old daemon.
settle() {
    [ -n "$1" ] || return 0
    i=0
    while [ $i -lt 100 ]; do
        now=$(socks "$1")
        [ -n "$now" ] && [ "$now" != "$2" ] && return 0
        sleep 0.1; i=$((i + 1))
    done
    echo "sshd (pid $1) did not reopen its sockets within 10s after the reload" >&2
    return 1
}
pid=$(cat /run/sshd.pid 2>/dev/null)
[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || pid=
before=$(socks "$pid")
if [ -d /run/systemd/system ]; then
    if [ "$1" = 1 ] && systemctl is-active --quiet ssh.socket; then
        systemctl daemon-reload && systemctl restart ssh.socket
    fi
    for u in ssh.service sshd.service; do
        if systemctl is-active --quiet "$u"; then
            systemctl reload "$u" || exit 1
            settle "$pid" "$before" || exit 1
            echo "reloaded $u"; exit 0
        fi
    done
    echo "sshd is not running: the new config applies when it starts"
elif [ -n "$pid" ]; then
    kill -HUP "$pid" && settle "$pid" "$before" && echo "sent SIGHUP to sshd (pid $pid), which reopened its sockets"
else
    echo "sshd is not running: the new config applies when it starts"
fi
""".strip()


# $1 drop-in, $2 the kept previous one, $3 as RELOAD's $1: put the old drop-in back, reload.
RESTORE = r"""
D=$1; P=$2
if [ -e "$P.absent" ]; then rm -f "$D"; else cp -p "$P" "$D.dlrig-old" && mv -f "$D.dlrig-old" "$D" || exit 1; fi
shift 2
""".strip() + "\n" + RELOAD


def _sh(script: str, *args) -> str:
    from shlex import quote

    return f"sh -c {quote(script)} dlrig-ssh " + " ".join(quote(str(a)) for a in args)


def wanted_ports() -> list[int]:
    """sshd's ports: the one this connection came in on (else ``ssh_port``) plus the extras."""
    conn = (fact(SshConnection, _sudo=False) or {}).get("port")
    configured = setting("ssh_port")
    if conn is not None and configured and conn != configured:
        log.warning(f"{host.name}: ssh: connected to port {configured} but sshd received it on {conn} "
                    f"(port forwarding?): keeping sshd on {conn}")
    base = conn if conn is not None else configured
    return sorted({int(base), *(int(p) for p in setting("ssh_extra_ports") or [])})


def login_method(data) -> str:
    """How pyinfra logs in: ``publickey`` (ssh_key, an agent or ~/.ssh keys) or ``password``
    (ssh_password without ssh_key)."""
    if data.get("ssh_password") and not data.get("ssh_key"):
        return sshaccess.PASSWORD
    return sshaccess.PUBLICKEY


def _refuse(text: str) -> None:
    raise DeployError(f"ssh: refusing before any change: {text}")


def prove_access_unchanged(login: str, method: str, conn: dict, text: str, keys: list,
                           user: str, password: bool | None) -> None:
    """Refuse (DeployError) a candidate drop-in under which ``login`` could no longer log in by
    ``method`` from the controller, or under which no key of ``user`` would be accepted while
    password login goes off. Decided from sshd's effective config (``sshd -T -C``)."""
    users = tuple(dict.fromkeys([login, user]))
    access = host.get_fact(SshdAccess, candidate_b64=base64.b64encode(text.encode()).decode(),
                           dropin=DROPIN, main=MAIN_CONFIG, client=conn["client"],
                           server=conn["server"], port=conn["port"], users=users)
    if access is None:
        return  # no sshd: nothing to lock anyone out of yet
    lines = text.splitlines()
    extra = list(host.data.ssh_extra_config)
    if access.get("invalid"):
        msg = access["invalid"]
        m = re.search(r"line (\d+)", msg)
        n = int(m.group(1)) if m and DROPIN in msg else 0
        shown = f" (the line is {lines[n - 1].strip()!r})" if 0 < n <= len(lines) else ""
        _refuse(f"sshd -t rejected the new config; {DROPIN} and {MAIN_CONFIG} are unchanged: {msg}{shown}")
    mine = access["users"].get(login)
    if not mine or not mine["current"]:
        return
    for keyword, why in sshaccess.judge(login, mine["groups"], method, conn["client"], conn["port"],
                                        mine["current"], mine["candidate"]):
        source = sshaccess.line_for(keyword, extra)
        if source:
            _refuse(f"ssh_extra_config line {source!r} {why}; dlrig connects as {login} by {method} "
                    f"from {conn['client']}: remove or change the line")
        origin = {"passwordauthentication": "ssh_password_authentication",
                  "kbdinteractiveauthentication": "ssh_password_authentication",
                  "permitrootlogin": "ssh_permit_root_login"}.get(keyword, "the new drop-in")
        _refuse(f"{origin} ({sshaccess.line_for(keyword, lines) or keyword}) {why}; dlrig connects "
                f"as {login} by {method}: change the setting or log in another way")
    # The owner's keys: every one must be of a type the new sshd accepts for the owner.
    theirs = access["users"].get(user) or mine
    accepted = set((theirs["candidate"] or {}).get("pubkeyacceptedalgorithms", "").split(","))
    for k in keys:
        if accepted != {""} and not accepted & set(k.algorithms()):
            _refuse(f"ssh_authorized_keys {k.label}: sshd on {host.name} does not accept {k.type} "
                    "keys (PubkeyAcceptedAlgorithms); use an ed25519 key (ssh-keygen -t ed25519)")
    if password is False and keys and (theirs["candidate"] or {}).get("pubkeyauthentication") != "yes":
        _refuse(f"password login would go off while key login is off for {user}")


def new_login_sudo(state, host_, login: str) -> str | None:
    """A brand-new SSH connection with pyinfra's own credentials runs ``sudo -n true`` (``true``
    as root): None when it works, else why not. Retries while sshd re-executes after SIGHUP."""
    import time

    from pyinfra.connectors.ssh import SSHConnector
    from pyinfra.connectors.sshuserclient import SSHClient

    connector = SSHConnector(state, host_)
    kwargs = connector.make_paramiko_kwargs()
    hostname = kwargs.pop("hostname")
    kwargs["timeout"] = 10
    sudo_password = password_for(host_.data)
    cmd = "true" if login == "root" else ("sudo -S -p '' true" if sudo_password else "sudo -n true")
    why = "no attempt"
    for _ in range(10):
        client = SSHClient()
        try:
            client.connect(hostname, **kwargs)
            stdin, stdout, stderr = client.exec_command(cmd, timeout=30)
            if sudo_password:
                stdin.write(sudo_password + "\n")
                stdin.flush()
            code = stdout.channel.recv_exit_status()
            if code == 0:
                return None
            return f"`{cmd}` exited {code}: {stderr.read().decode(errors='replace').strip()[:200]}"
        except Exception as e:  # refused, reset while sshd restarts: try again
            why = f"{type(e).__name__}: {e}"[:200]
            time.sleep(1)
        finally:
            client.close()
    return f"no new SSH login ({why})"


def _prove_or_restore(state, host, restore: str, login: str) -> None:  # noqa: F811 (pyinfra passes host)
    host_ = host
    why = new_login_sudo(state, host_, login)
    if why is None:
        log.info(f"{host_.name}: ssh: a new SSH login still gets sudo")
        return
    ok, out = host_.run_shell_command(restore, _sudo=True)
    restored = "the previous sshd config was restored byte for byte and sshd reloaded" if ok else \
        "restoring the previous sshd config FAILED too: " + " ".join(out.stderr_lines[-2:] if hasattr(out, "stderr_lines") else [])
    raise DeployError(f"ssh: after the reload a new SSH login failed: {why}; {restored}")


@deploy("ssh", data_defaults=DEFAULTS)
def ssh():
    user = owner()
    keys = parse_keys([k.strip() for k in host.data.ssh_authorized_keys])
    have = fact(AuthorizedKeyCount, user=user)
    password = host.data.ssh_password_authentication
    login = fact(User, _sudo=False)
    conn = fact(SshConnection, _sudo=False)  # None: not over SSH (@local, @docker)
    method = login_method(host.data)

    # --- lock-out guards, before any change --------------------------------------------------
    if have is None and (keys or password is False):
        raise DeployError(f"ssh: user {user} does not exist on {host.name}; create it first "
                          "or set workstation_user to an existing user")
    if password is False and not keys and not have:
        raise DeployError(
            f"ssh: refusing to turn password login off: {user} has no authorized key on "
            f"{host.name} and ssh_authorized_keys is empty; add your public key to ssh_authorized_keys")
    if password is None:
        password = False if (keys or have) else None
        if password is None:
            log.warning(f"{host.name}: ssh: {user} has no SSH key yet: password login left as it is; "
                        "add ssh_authorized_keys to turn it off")
        elif conn and method == sshaccess.PASSWORD:
            password = None
            log.warning(f"{host.name}: ssh: dlrig logs in as {login} with a password: password login "
                        "left on; log in with ssh_key to let dlrig turn it off")
    if host.data.ssh_permit_root_login == "no" and login == "root":
        raise DeployError("ssh: refusing PermitRootLogin no while pyinfra logs in as root; "
                          "log in as a sudo user or set ssh_permit_root_login = 'prohibit-password'")
    if conn:
        for k in keys:
            for pattern in k.options.get("from", []):
                if not from_allows(pattern, conn["client"]):
                    _refuse(f"ssh_authorized_keys {k.label}: from=\"{pattern}\" excludes this "
                            f"controller ({conn['client']}), so dlrig cannot prove the key works; "
                            "add the address or drop the option")

    aptget.install("OpenSSH server", ["openssh-server"])

    # --- the drop-in: proven to keep this login, validated as a whole, then installed ---------
    ports = wanted_ports()
    text = render_dropin(ports=ports, permit_root_login=host.data.ssh_permit_root_login,
                         password_authentication=password,
                         extra_config=list(host.data.ssh_extra_config))
    if conn:
        prove_access_unchanged(login, method, conn, text, keys, user, password)
        if user != login:
            log.info(f"{host.name}: ssh: {login} (dlrig's login, {method}) keeps access; "
                     f"the owner {user} logs in " + ("by key" if password is False else "by key or password"))

    if keys:
        server.user_authorized_keys(name=f"authorized keys of {user}", user=user,
                                    public_keys=[k.strip() for k in host.data.ssh_authorized_keys])

    if fact(Sha1File, path=DROPIN) == hashlib.sha1(text.encode()).hexdigest():
        return
    old_ports = _dropin_ports(fact(Sha1File, path=DROPIN) is not None)
    files.directory(name="staging directory", path="/var/lib/dlrig/ssh", mode="700", **ROOT_OWNED)
    files.put(name="stage the sshd drop-in", src=io.StringIO(text), dest=STAGING, mode="600", **ROOT_OWNED)
    want = "" if password is None else ("yes" if password else "no")
    server.shell(name=f"validate the whole config (sshd -t) and install {DROPIN}",
                 commands=[_sh(VALIDATE_AND_INSTALL, STAGING, DROPIN, MAIN_CONFIG, want, PREVIOUS)])
    moved = "1" if old_ports != ports else "0"
    server.shell(name="reload sshd (live sessions survive)", commands=[_sh(RELOAD, moved)])
    if conn:
        python.call(name="prove a new SSH login still gets sudo (else restore the old config)",
                    function=_prove_or_restore, restore=_sh(RESTORE, DROPIN, PREVIOUS, moved), login=login)


def _dropin_ports(exists: bool) -> list[int] | None:
    if not exists:
        return None
    from pyinfra.facts.files import FileContents

    lines = fact(FileContents, path=DROPIN) or []
    return sorted({int(x.split()[1]) for x in lines if re.match(r"^\s*Port\s+\d+\s*$", x)})
