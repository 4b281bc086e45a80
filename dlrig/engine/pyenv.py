"""Helpers of the Python ML stack roles (conda, pytorch, jupyter) that need no host.

The layout of the Python environment, as pure functions the roles, the checks and the CLI share:
paths derived from the settings, the torch wheel source (from :mod:`dlrig.gpu.resolver`,
overridable by ``pip_index_url`` and ``pip_find_links``) and requirement parsing.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Iterable, NamedTuple

#: Debian's and Ubuntu's system trust store (update-ca-certificates writes it, extra CAs included).
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
#: The systemd unit that runs JupyterLab.
JUPYTER_UNIT = "dlrig-jupyter.service"
#: Distribution names the pytorch role always installs after torch (normalized names).
BASE_PACKAGES = ("fastai", "ipykernel")
#: What the jupyter role installs into the environment.
JUPYTER_PACKAGES = ("jupyterlab",)

# ------------------------------------------------------------------------------ paths

def home_of(user: str, home: str | None = None) -> str:
    """``user``'s home directory: ``home`` as the host's passwd gives it (:func:`home_command`),
    else the usual place (``/root``, ``/home/USER``) for a user the host does not know yet."""
    if home:
        return home
    return "/root" if user == "root" else f"/home/{user}"


def home_command(user: str) -> str:
    """Shell that prints ``user``'s home from the host's passwd (``getent``: NSS, LDAP too), or nothing."""
    return f"getent passwd {shlex.quote(user)} | cut -d: -f6"


def conda_prefix(data: dict[str, Any], user: str, home: str | None = None) -> str:
    return data.get("conda_prefix") or f"{home_of(user, home)}/miniforge3"


def env_prefix(prefix: str, env_name: str) -> str:
    return f"{prefix}/envs/{env_name}"


def env_python(prefix: str, env_name: str) -> str:
    return f"{env_prefix(prefix, env_name)}/bin/python"


class EnvLayout(NamedTuple):
    """Where the owner's environment lives: what the pytorch and jupyter roles both need."""

    user: str
    home: str
    prefix: str
    env_name: str
    envp: str
    python: str


def env_layout(user: str, conda_prefix_setting: str | None, env_name: str, home: str | None = None) -> EnvLayout:
    prefix = conda_prefix({"conda_prefix": conda_prefix_setting}, user, home)
    return EnvLayout(user, home_of(user, home), prefix, env_name, env_prefix(prefix, env_name), env_python(prefix, env_name))


def as_user(user: str) -> dict[str, Any]:
    """pyinfra arguments that run an operation as ``user`` (pip and conda must not run as root)."""
    return {"_sudo": True, "_sudo_user": user}


# ------------------------------------------------------------------------------ requirements

def normalize(name: str) -> str:
    """PEP 503 normalized distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    """The distribution name of a requirement string (``pandas>=2`` -> ``pandas``)."""
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
    if not m:
        raise ValueError(f"{spec!r} is not a pip requirement (e.g. 'pandas' or 'pandas>=2.2')")
    return normalize(m.group(1))


def unsatisfied(specs: Iterable[str], installed: dict[str, str]) -> list[str]:
    """The requirement strings that ``installed`` ({normalized name: version}) does not satisfy."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # pragma: no cover - packaging comes with pip/pytest
        Requirement = None  # type: ignore[assignment]
    missing = []
    for spec in specs:
        name = requirement_name(spec)
        version = installed.get(name)
        if version is None:
            missing.append(spec)
            continue
        if Requirement is not None:
            req = Requirement(spec)
            if req.specifier and not req.specifier.contains(version, prereleases=True):
                missing.append(spec)
    return missing


def check_requirements(value: list) -> str | None:
    """Setting check for ``extra_packages``: plain requirement strings, no pip options."""
    for spec in value:
        if not isinstance(spec, str) or spec.strip().startswith("-"):
            return f"{spec!r}: give requirement strings such as 'pandas>=2.2', not pip options"
        try:
            requirement_name(spec)
        except ValueError as e:
            return str(e)
        try:
            from packaging.requirements import InvalidRequirement, Requirement
        except ImportError:  # pragma: no cover
            continue
        try:
            Requirement(spec)
        except InvalidRequirement as e:
            return f"{spec!r} is not a valid requirement: {e}"
    return None


# ------------------------------------------------------------------------------ torch source

def base_version(version: str | None) -> str | None:
    """``2.14.1+cu130`` -> ``2.14.1``."""
    return version.split("+", 1)[0] if version else version


def version_matches(wanted: str | None, have: str | None) -> bool:
    """``2.14`` matches any 2.14.x, ``2.14.1`` only 2.14.1 (local labels such as +cu130 ignored)."""
    if not wanted:
        return have is not None
    if not have:
        return False
    w, h = base_version(wanted).split("."), base_version(have).split(".")
    return h[: len(w)] == w


def torch_requirement(version: str | None) -> str:
    """``torch==2.14.1``, or ``torch==2.14.*`` for a major.minor wish, or ``torch``."""
    if not version:
        return "torch"
    v = base_version(version)
    return f"torch=={v}" if v.count(".") >= 2 else f"torch=={v}.*"


def torchvision_spec(torch_version: str | None) -> str:
    """The torchvision requirement matching a torch release (torchvision 0.(m+15) pairs torch 2.m)."""
    if not torch_version:
        return "torchvision"
    parts = base_version(torch_version).split(".")
    if len(parts) < 2 or parts[0] != "2" or not parts[1].isdigit():
        raise ValueError(f"torch_version {torch_version!r}: dlrig knows torchvision pairs for torch 2.x only")
    return f"torchvision==0.{int(parts[1]) + 15}.*"


def variant_cuda(variant: str | None) -> str | None:
    """``cu128`` -> ``12.8``, ``cu130`` -> ``13.0``; ``cpu``/None -> None."""
    m = re.fullmatch(r"cu(\d+)(\d)", variant or "")
    return f"{int(m.group(1))}.{m.group(2)}" if m else None


@dataclass(frozen=True)
class TorchSource:
    index_url: str
    find_links: tuple[str, ...]
    version: str | None  # None: the newest the index offers
    variant: str  # "cpu", "cu128", ... (what the host needs; from the resolver)

    @property
    def gpu(self) -> bool:
        return self.variant != "cpu"

    def pip_args(self) -> list[str]:
        args = ["--index-url", self.index_url]
        for link in self.find_links:
            args += ["--find-links", link]
        return args

    def requirements(self) -> list[str]:
        return [torch_requirement(self.version), torchvision_spec(self.version)]


def torch_source(data: dict[str, Any], resolution: Any | None) -> TorchSource:
    """Where torch comes from: the resolver's index and version, overridden by the settings."""
    torch = getattr(resolution, "torch", None)
    variant = getattr(torch, "variant", None) or ("cpu" if data.get("cpu_only") else None)
    if variant is None:
        raise ValueError("the resolver gave no torch variant for this host")
    index = data.get("pip_index_url") or getattr(torch, "index_url", None)
    if not index:
        index = f"https://download.pytorch.org/whl/{variant}"
    version = data.get("torch_version") or getattr(torch, "version", None)
    return TorchSource(index.rstrip("/"), tuple(data.get("pip_find_links") or ()), version, variant)


def torch_needs_install(src: TorchSource, env: dict | None) -> str | None:
    """Why torch must be (re)installed in ``env`` (the PythonEnv fact), or None when it fits."""
    dists = (env or {}).get("dists", {})
    have = dists.get("torch")
    if have is None:
        return "torch is not installed"
    if src.version and not version_matches(src.version, have):
        return f"torch {have} installed, torch_version is {src.version}"
    if "torchvision" not in dists:
        return "torchvision is not installed"
    if src.gpu and not (env or {}).get("torch_cuda"):
        return f"torch {have} is a CPU build but this host needs {src.variant}"
    return None


#: pip/uv options that name where packages come from (with their value).
_SOURCE_OPTIONS = ("--index-url", "--extra-index-url", "-i")


def install_command(python: str, args: list[str], uv: bool, wheelhouse: str | None = None,
                    uv_cache: str | None = None) -> str:
    """``pip install ARGS`` into ``python``'s environment, as a shell command.

    With ``uv`` and a ``uv`` beside ``python`` (the pytorch role installs it), ``uv pip install``
    does it (resolves and installs many times faster, same result); else pip. uv ignores pip.conf,
    so what the env's pip.conf gives pip is passed explicitly: the system CA store as
    SSL_CERT_FILE; index and find-links are in ARGS for both. ``--index-strategy
    unsafe-best-match``: the best version across index and find-links, as pip picks.
    ``"$c"`` in ARGS stays a shell variable (a constraints file).

    ``wheelhouse`` (cache_dir's): the wheels are first fetched into it (``pip download``, which
    resolves like the install would and skips what the wheelhouse already has), then installed
    from it alone (``--no-index --find-links``): each wheel is fetched once, and ``dlrig lock``
    finds every installed wheel there and only hashes it. ``uv_cache``: uv's cache folder
    (``UV_CACHE_DIR``; cache_dir's, where ``dlrig lock`` left the locked wheels unpacked).
    """
    def join(items: list[str]) -> str:
        return " ".join(shlex.quote(a) for a in items).replace("'$c'", '"$c"')

    fetch = ""
    if wheelhouse:
        fetch_args = [a for a in args if a not in ("--force-reinstall", "--reinstall", "--require-hashes")]
        fetch = join([python, "-m", "pip", "download", "--only-binary=:all:", "--disable-pip-version-check",
                      "-q", "-d", wheelhouse, "--find-links", wheelhouse, *fetch_args]) + " && "
        local, skip = [], False
        for a in args:
            if skip:
                skip = False
            elif a in _SOURCE_OPTIONS:
                skip = True
            elif a != "--no-index":
                local.append(a)
        args = ["--no-index", "--find-links", wheelhouse, *local]
    pip = join([python, "-m", "pip", "install", *args])
    if not uv:
        return fetch + pip
    uv_bin = str(PurePosixPath(python).parent / "uv")
    uv_args = ["--reinstall" if a == "--force-reinstall" else a for a in args]
    uv_cmd = (f"SSL_CERT_FILE={SYSTEM_CA_BUNDLE} " + (f"UV_CACHE_DIR={shlex.quote(uv_cache)} " if uv_cache else "")
              + join([uv_bin, "pip", "install", "--python", python, "--index-strategy", "unsafe-best-match",
                      *uv_args]))
    return f"{fetch}if [ -x {shlex.quote(uv_bin)} ]; then {uv_cmd}; else {pip}; fi"


def torch_install_command(python: str, src: TorchSource, force_reinstall: bool = False, uv: bool = False,
                          wheelhouse: str | None = None) -> str:
    """Install torch+torchvision from ``src`` only, then refuse a CPU build on a GPU host."""
    force = ["--force-reinstall"] if force_reinstall else []
    pip = install_command(python, [*force, *src.pip_args(), *src.requirements()], uv, wheelhouse)
    if not src.gpu:
        return pip
    verify = (
        f"{shlex.quote(python)} -c "
        + shlex.quote(
            "import torch, sys; c = torch.version.cuda; "
            "sys.exit(0 if c else 'torch ' + torch.__version__ + ' is a CPU build but this host needs "
            + src.variant + ": point pip_index_url at a CUDA index (e.g. https://download.pytorch.org/whl/"
            + src.variant + ")')"
        )
    )
    return f"{pip} && {verify}"


def python_matches(wanted: str, have: str | None) -> bool:
    return bool(have) and (have == wanted or have.startswith(wanted + "."))
