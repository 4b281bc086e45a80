"""How fast dlrig is against plain pyinfra and a raw shell script, on fresh test hosts.

    sudo python3 benchmarks/speed.py [--repeats 5] [--first-run | --first-run-only] [--before PYTHON]

Prints one table (its output goes in the README's performance section). Every timing is a median
of --repeats runs, the variants of a row interleaved (a, b, a, b, ...) so that load on the
machine hits them alike:

- no-op ``plan`` / ``apply`` of role base and of the light workstation (base, ssh, power,
  dualboot, unattended_upgrades): ``dlrig`` against the same deploy file run by plain
  ``pyinfra`` as shipped (pyinfra's own ssh connector: plain host names); ``dlrig`` answers a
  no-op from its verified-no-op record (dlrig.engine.noop; each dlrig variant is run twice before
  the timed runs, so it has one), ``dlrig --no-fast`` always runs pyinfra;
- 1 host against 4 hosts, no-op ``dlrig plan`` of the light workstation (and with --no-fast);
- fact reads and SSH commands of one no-op run (``pyinfra --debug`` lines);
- with --first-run: base+conda+pytorch+jupyter (cpu_only) on a bare host by ``dlrig apply`` and by
  a raw shell script doing the same installs (the local torch index and the Miniforge stand-in of
  tests/fixtures), then no-op plan/apply of the whole non-GPU workstation on the dlrig host; and
  the breakdown of both first runs: their longest steps (dlrig: pyinfra's operations, from
  ``apply -v``; the raw script: its commands), timed as their output arrives.

The firewall role is left out everywhere: test hosts share this machine's network stack, so ufw
there would filter this machine. Measured, never asserted.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import re
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dlrig.testing as testing  # noqa: E402
from dlrig.deploys import deploy_file  # noqa: E402
from dlrig.engine.runner import pyinfra_command  # noqa: E402

LIGHT = "base,ssh,power,dualboot,unattended_upgrades"
ML = "base,conda,pytorch,jupyter"
NON_GPU = "base,conda,pytorch,jupyter,ssh,power,dualboot,unattended_upgrades"
MACHINE_CAS = sorted(glob.glob("/usr/local/share/ca-certificates/*.crt"))
SMALL = {"base_packages": ["jq"], "extra_ca_certificates": MACHINE_CAS}
BREAKDOWN: list = []  # --first-run: (what, seconds, its longest steps)
BEFORE: list[str] = [""]  # --before: another dlrig's python (e.g. one installed from the main branch)


#: The children's environment: as a user's, Python writes and reuses bytecode (a shell that sets
#: PYTHONDONTWRITEBYTECODE, as this sandbox does, would time the checkout's dlrig compiled from source
#: at every start: --help 0.18 s instead of 0.10 s here).
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run(cmd: list[str], timeout: int = 3600) -> float:
    """Seconds ``cmd`` took; a command of the --before dlrig runs outside this checkout."""
    start = time.monotonic()
    cwd = "/" if cmd and cmd[0] == BEFORE[0] else ROOT
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=CHILD_ENV)
    took = time.monotonic() - start
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stdout[-1500:]}\n{r.stderr[-3000:]}")
    return took


def dlrig(*args: str) -> list[str]:
    return [sys.executable, "-m", "dlrig", *args]


def pyinfra(inv: Path, roles: str, dry: bool, debug: bool = False) -> list[str]:
    cmd = pyinfra_command(str(inv), deploy_file(), dry=dry, data={"dlrig_roles": roles.split(",")})
    return cmd + (["--debug"] if debug else [])


def stock(inv: Path) -> Path:
    """The same inventory with plain host names: pyinfra's own ssh connector (no TCP_NODELAY)."""
    out = inv.with_name(inv.stem + "-stock.py")
    out.write_text(inv.read_text().replace("'@dlrig-ssh/", "'"))
    return out


def cpu_seconds(cmd: list[str]) -> float:
    """CPU seconds (user + system) that ``cmd`` and its children used on this machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run(cmd)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def medians(variants: dict[str, list[str]], repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in variants}
    for name, cmd in variants.items():  # warm-up: a no-op dlrig run keeps its verified-no-op record
        if cmd[:3] == [sys.executable, "-m", "dlrig"] and "--no-fast" not in cmd and cmd[3] in ("plan", "apply"):
            for _ in range(2):  # the first run after a change may not get one (file access times)
                run(cmd)
    for _ in range(repeats):
        for name, cmd in variants.items():
            times[name].append(run(cmd))
    return {k: statistics.median(v) for k, v in times.items()}


def counts(inv: Path, roles: str) -> tuple[int, int, int]:
    """(fact reads, distinct fact reads, SSH commands) of a no-op dry run, the second of two alike
    (@dlrig-ssh batches the fact reads the last run of the same deploy and data made)."""
    for _ in range(2):
        r = subprocess.run(pyinfra(inv, roles, dry=True, debug=True), capture_output=True, text=True, cwd=ROOT)
    facts = re.findall(r"Getting fact: (\S+) \(([^)]*)\)", r.stderr)
    return len(facts), len(set(facts)), len(re.findall(r"Running command on ", r.stderr))


def timed_steps(cmd: list[str], start: str, input: str | None = None, timeout: int = 3600) -> tuple[float, list]:
    """Run ``cmd``; its stderr lines matching ``start`` (a regex with one group: the step's name)
    begin steps. (seconds in all, [(step, seconds), ...], stdout); the time before the first step
    is "(start, connect, facts)"."""
    import threading

    begin = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)
    reader.start()
    if input is not None:
        proc.stdin.write(input)
    proc.stdin.close()
    steps, current, since, tail = [], "(start, connect, facts)", begin, []
    for line in proc.stderr:
        tail = (tail + [line])[-40:]
        m = re.match(start, line.rstrip("\n"))
        if m:
            now = time.monotonic()
            steps.append((current, now - since))
            current, since = m.group(1).strip(), now
    rc = proc.wait(timeout=timeout)
    reader.join()
    end = time.monotonic()
    steps.append((current, end - since))
    if rc != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{''.join(out)[-1500:]}\n{''.join(tail)[-3000:]}")
    return end - begin, steps, "".join(out)


def top_steps(steps: list, n: int = 8) -> list:
    """The ``n`` longest steps (a step that recurs, e.g. one per host, summed), longest first."""
    total: dict[str, float] = {}
    for name, took in steps:
        total[name] = total.get(name, 0.0) + took
    return sorted(total.items(), key=lambda kv: -kv[1])[:n]


# --- the raw script: base+conda+pytorch+jupyter as a person would type it ------------------------

def raw_script(data: dict, home: str, yml: str) -> str:
    prefix, env = f"{home}/miniforge3", f"{home}/miniforge3/envs/dl"
    py = f"{env}/bin/python"
    cas = " ".join(f"/tmp/bench-ca-{i}.crt" for i in range(len(MACHINE_CAS)))
    steps = [
        f"sudo cp {cas} /usr/local/share/ca-certificates/ 2>/dev/null || true" if MACHINE_CAS else "true",
        "sudo update-ca-certificates >/dev/null",
        "sudo apt-get update -qq",
        "sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "
        + " ".join(data["base_packages"]) + " curl ca-certificates >/dev/null",
        f"curl -fsSL -o /tmp/miniforge.sh {shlex.quote(data['conda_installer_url'])}",
        f"echo '{data['conda_installer_sha256']}  /tmp/miniforge.sh' | sha256sum -c - >/dev/null",
        f"bash /tmp/miniforge.sh -b -p {prefix} >/dev/null",
        # The heredoc's end on a line of its own (the template renders without a final newline):
        # without it the rest of the script was heredoc text, never run (the 5.3x of 2026-11-28).
        f"mkdir -p {prefix}/dlrig && cat > {prefix}/dlrig/dl.environment.yml <<'YML'\n{yml.rstrip(chr(10))}\nYML",
        f"{prefix}/bin/conda env create -p {env} -f {prefix}/dlrig/dl.environment.yml >/dev/null",
        f"printf '[global]\\ncert = /etc/ssl/certs/ca-certificates.crt\\n' > {env}/pip.conf",
        f"{py} -m pip install -q --index-url {data['pip_index_url']} torch=={data['torch_version']} torchvision",
        f"{py} -m pip install -q fastai ipykernel jupyterlab",
        f"{py} -m ipykernel install --user --name dl --display-name 'Python (dl)' >/dev/null",
        # Proof that it all ran: the script fails unless the environment has what dlrig installs.
        f"{py} -c 'import torch, torchvision, fastai, ipykernel, jupyterlab' && echo RAW-SCRIPT-DONE",
    ]
    # Each step announces itself on stderr (the breakdown: benchmarks/speed.py --first-run).
    marked = [f"echo {shlex.quote('@@ ' + step.split(chr(10))[0][:70])} >&2\n{step}" for step in steps]
    return "set -eu\n" + "\n".join(marked) + "\n"


def first_run(pool, work: Path, repeats: int, rows: list) -> None:
    from jinja2 import Template

    from dlrig.engine import passwords
    from tests.fixtures import pyindex
    from tests.fixtures.miniforge_standin import build_installer

    root = work / "served"
    installer = build_installer(root / "miniforge")
    index = pyindex.build_index(testing.image.default_cache_dir() / "torch-index-2.14.1",
                                ["torch==2.14.1", "torchvision==0.29.1"])
    (root / "torch").symlink_to(index)
    with pyindex.serve(root) as url:
        a, b = pool.start_many(2, ["fr-dlrig", "fr-raw"])
        data = {**SMALL, "cpu_only": True, "conda_installer_url": f"{url}/miniforge/{installer.name}",
                "conda_installer_sha256": hashlib.sha256(installer.read_bytes()).hexdigest(),
                "pip_index_url": f"{url}/torch/simple", "torch_version": "2.14.1",
                "jupyter_password_hash": passwords.hash_password("bench")}
        inv = testing.write_inventory([a], work / "ml.py", data=data)
        yml = Template((ROOT / "templates" / "environment.yml.j2").read_text()).render(
            env_name="dl", python_version="3.11", channels=["conda-forge"], torch_index=data["pip_index_url"])
        for i, ca in enumerate(MACHINE_CAS):
            subprocess.run(["scp", "-q", "-F", "/dev/null", "-i", str(b.key_path), "-o", "StrictHostKeyChecking=no",
                            "-o", "UserKnownHostsFile=/dev/null", "-P", str(b.port), ca,
                            f"{b.user}@{b.address}:/tmp/bench-ca-{i}.crt"], check=True)
        script = raw_script(data, f"/home/{b.user}", yml)
        t_raw, raw_steps, raw_out = timed_steps(b.ssh_argv("bash -s"), r"^@@ (.*)$", input=script)
        if "RAW-SCRIPT-DONE" not in raw_out:
            raise SystemExit(f"the raw script did not get to its end:\n{raw_out[-2000:]}")
        t_dlrig, dlrig_steps, _ = timed_steps(dlrig("apply", str(inv), "--roles", ML, "--yes", "-v"),
                                           r"^--> Starting operation: (.*)$")
        rows.append((f"first run {ML} (cpu_only)", t_dlrig, "raw script", t_raw, 1))
        BREAKDOWN[:] = [("dlrig apply", t_dlrig, top_steps(dlrig_steps)), ("raw script", t_raw, top_steps(raw_steps))]
        run(dlrig("apply", str(inv), "--roles", NON_GPU, "--yes"))
        sinv = stock(inv)
        m = medians({"dlrig plan": dlrig("plan", str(inv), "--roles", NON_GPU, "--json"),
                     "pyinfra --dry": pyinfra(sinv, NON_GPU, dry=True),
                     "dlrig apply": dlrig("apply", str(inv), "--roles", NON_GPU, "--yes", "--json"),
                     "pyinfra -y": pyinfra(sinv, NON_GPU, dry=False),
                     "slow plan": dlrig("plan", str(inv), "--roles", NON_GPU, "--json", "--no-fast"),
                     "slow apply": dlrig("apply", str(inv), "--roles", NON_GPU, "--yes", "--json", "--no-fast")},
                    repeats)
        rows.append(("no-op plan, non-GPU workstation", m["dlrig plan"], "pyinfra", m["pyinfra --dry"], repeats))
        rows.append(("no-op apply, non-GPU workstation", m["dlrig apply"], "pyinfra", m["pyinfra -y"], repeats))
        rows.append(("no-op plan, non-GPU, --no-fast", m["slow plan"], "pyinfra", m["pyinfra --dry"], repeats))
        rows.append(("no-op apply, non-GPU, --no-fast", m["slow apply"], "pyinfra", m["pyinfra -y"], repeats))
        rows.append(("facts/distinct/SSH commands, non-GPU no-op", "%d/%d/%d" % counts(inv, NON_GPU), "", "", 1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--first-run", action="store_true", help="also base+conda+pytorch+jupyter vs a raw script")
    ap.add_argument("--first-run-only", action="store_true", help="only the first run and its breakdown")
    ap.add_argument("--before", metavar="PYTHON",
                    help="also time this python's dlrig (e.g. an install of the main branch) on the same hosts")
    args = ap.parse_args()
    if args.before:
        BEFORE[:] = [args.before, "-m", "dlrig"]
    load = os.getloadavg()
    rows: list[tuple] = []
    with tempfile.TemporaryDirectory(prefix="dlrig-speed-") as tmp:
        work = Path(tmp)
        os.environ["XDG_STATE_HOME"] = str(work / "state")  # verified-no-op records of these hosts only
        pool = testing.HostPool(work / "hosts", testing.golden_image())
        try:
            if args.first_run_only:
                first_run(pool, work, args.repeats, rows)
                return
            hosts = pool.start_many(4)
            inv1 = testing.write_inventory(hosts[:1], work / "one.py", data=SMALL)
            inv4 = testing.write_inventory(hosts, work / "four.py", data=SMALL)
            run(dlrig("apply", str(inv4), "--roles", LIGHT, "--yes"))
            stock1 = stock(inv1)
            for label, roles in (("base", "base"), ("light workstation", LIGHT)):
                variants = {"dlrig plan": dlrig("plan", str(inv1), "--roles", roles, "--json"),
                            "pyinfra --dry": pyinfra(stock1, roles, dry=True),
                            "dlrig apply": dlrig("apply", str(inv1), "--roles", roles, "--yes", "--json"),
                            "pyinfra -y": pyinfra(stock1, roles, dry=False),
                            "slow plan": dlrig("plan", str(inv1), "--roles", roles, "--json", "--no-fast")}
                if args.before:
                    variants["before plan"] = [*BEFORE, "plan", str(stock1), "--roles", roles, "--json"]
                m = medians(variants, args.repeats)
                rows.append((f"no-op plan, {label}", m["dlrig plan"], "pyinfra", m["pyinfra --dry"], args.repeats))
                rows.append((f"no-op apply, {label}", m["dlrig apply"], "pyinfra", m["pyinfra -y"], args.repeats))
                rows.append((f"no-op plan, {label}, --no-fast", m["slow plan"], "pyinfra", m["pyinfra --dry"],
                             args.repeats))
                if args.before:
                    rows.append((f"no-op plan, {label}", m["dlrig plan"], "before", m["before plan"], args.repeats))
            m = medians({"1": dlrig("plan", str(inv1), "--roles", LIGHT, "--json"),
                         "4": dlrig("plan", str(inv4), "--roles", LIGHT, "--json"),
                         "1 slow": dlrig("plan", str(inv1), "--roles", LIGHT, "--json", "--no-fast"),
                         "4 slow": dlrig("plan", str(inv4), "--roles", LIGHT, "--json", "--no-fast")}, args.repeats)
            rows.append(("no-op dlrig plan, light workstation: 4 hosts", m["4"], "1 host", m["1"], args.repeats))
            rows.append(("the same with --no-fast: 4 hosts", m["4 slow"], "1 host", m["1 slow"], args.repeats))
            # the test hosts run their fact commands on this machine's CPUs too: dlrig's own share is its
            # CPU time (user + system of dlrig and its children, not of the hosts' sshd)
            cpu = {k: statistics.median(cpu_seconds(dlrig("plan", str(i), "--roles", LIGHT, "--json"))
                                        for _ in range(args.repeats)) for k, i in (("1", inv1), ("4", inv4))}
            rows.append(("the same, dlrig's CPU seconds: 4 hosts", round(cpu["4"], 2), "1 host", round(cpu["1"], 2),
                         args.repeats))
            rows.append(("facts/distinct/SSH commands, light no-op", "%d/%d/%d" % counts(inv1, LIGHT), "", "", 1))
            light = {"help": ["--help"], "check": ["check", str(stock1)], "resolve": ["resolve", "--gpu", "10de:1e84"]}
            variants = {k: dlrig(*a) for k, a in light.items()}
            variants["python"] = [sys.executable, "-c", "pass"]  # this interpreter's own start, for scale
            if args.before:
                variants.update({f"before {k}": [*BEFORE, *a] for k, a in light.items()})
            m = medians(variants, args.repeats)
            for k in light:
                rows.append((f"dlrig {k} (no host)", m[k], "before" if args.before else "",
                             m.get(f"before {k}", ""), args.repeats))
            rows.append(("python -c pass (the interpreter alone)", m["python"], "", "", args.repeats))
            if args.first_run:
                first_run(pool, work, args.repeats, rows)
        finally:
            pool.stop_all()
            report(load, rows)  # what was measured, even when a later part failed


def report(load, rows: list) -> None:
    print(f"load average {load[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end ({os.cpu_count()} CPUs)")
    print(f"{'what':46} {'dlrig':>8} {'against':>11} {'it':>8} {'ratio':>6} {'runs':>5}")
    for what, ours, other, theirs, n in rows:
        if isinstance(ours, str):
            print(f"{what:46} {ours:>8} {'':>11} {'':>8} {'':>6} {n:>5}")
            continue
        ratio = f"{ours / theirs:.2f}" if theirs else ""
        it = f"{theirs:8.2f}" if theirs else f"{'':>8}"
        print(f"{what:46} {ours:8.2f} {other:>11} {it} {ratio:>6} {n:>5}")
    for what, total, steps in BREAKDOWN:
        print(f"\nfirst run, {what}: {total:.1f} s; its longest steps:")
        for name, took in steps:
            print(f"  {took:7.1f} s  {name[:90]}")


if __name__ == "__main__":
    main()
