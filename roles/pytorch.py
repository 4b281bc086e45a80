"""Role ``pytorch``: one conda environment with torch (the build that fits the driver) and fastai.

1. ``environment.yml`` (python + pip, conda-forge) -> ``conda env create -p PREFIX/envs/ENV``.
2. ``ENV/pip.conf``: pip trusts the system store (extra CAs from the base role included).
3. torch + torchvision with pip from the resolver's index (``https://download.pytorch.org/whl/
   <variant>``; ``pip_index_url``/``pip_find_links`` override it for mirrors and wheelhouses), that
   index only, so a GPU host never gets PyPI's or a CPU build; on a GPU host the install is
   verified (``torch.version.cuda``) and a CPU build already there is replaced.
4. fastai, ipykernel and ``extra_packages`` from PyPI, constrained to the installed torch build.
5. The environment registered as a Jupyter kernel (``ipykernel install --user``).

Every step is guarded by facts (``PythonEnv`` reads package metadata, never imports torch), so a
converged host plans no change; a new ``torch_version`` updates torch in place.
"""

from __future__ import annotations

import shlex
from io import StringIO

from dlrig.roles import template
from dlrig.roles.settings.pytorch import DEFAULTS
from pyinfra import host
from pyinfra.api import DeployError, deploy
from pyinfra.facts.files import File
from pyinfra.operations import files, server

from dlrig.engine import download, lockfile, pyenv
from dlrig.engine.facts import CondaInstall, PythonEnv, fact
from dlrig.engine.hostdata import owned_by, owner, owner_home, setting
from dlrig.engine.lockfacts import MissingFiles
from dlrig.engine.stack import resolve_host


def _torch_source() -> pyenv.TorchSource:
    data = {k: setting(k) for k in ("pip_index_url", "pip_find_links", "torch_version", "cpu_only")}
    try:
        return pyenv.torch_source(data, resolve_host())
    except ValueError as e:
        raise DeployError(f"pytorch: {e}") from None


def wheelhouse() -> str | None:
    """cache_dir's wheelhouse, where the installs fetch their wheels first (None: no cache_dir)."""
    cache_dir = setting("cache_dir")
    return lockfile.cache_path(cache_dir, "wheels") if cache_dir else None


def packages_command(python: str, specs: list[str], find_links: tuple[str, ...], uv: bool = False,
                     wheelhouse: str | None = None) -> str:
    """Install ``specs`` with the installed torch and torchvision pinned (a constraints file)."""
    pin = shlex.quote(
        "import importlib.metadata as m\n"
        "for n in ('torch', 'torchvision'):\n"
        "    try: print(n + '==' + m.version(n))\n"
        "    except m.PackageNotFoundError: pass\n"
    )
    links = [a for link in find_links for a in ("--find-links", link)]
    install = pyenv.install_command(python, ["-c", "$c", *links, *specs], uv, wheelhouse)
    return (f'set -e; c=$(mktemp); trap \'rm -f "$c"\' EXIT; '
            f'{shlex.quote(python)} -c {pin} > "$c"; {install}')


@deploy("pytorch", data_defaults=DEFAULTS)
def pytorch():
    user, home, prefix, env_name, envp, python = pyenv.env_layout(
        owner(), setting("conda_prefix"), setting("env_name"), owner_home())
    as_user = pyenv.as_user(user)
    src = _torch_source()

    conda_state = fact(CondaInstall, prefix=prefix)
    selected = setting("dlrig_roles") or []
    if not conda_state["conda"] and selected and "conda" not in selected:
        raise DeployError(f"no conda at {prefix}: apply the conda role first (--roles conda,pytorch)")

    env = fact(PythonEnv, python=python)
    wanted_python = setting("python_version")
    if env is not None and not pyenv.python_matches(wanted_python, env.get("python")):
        raise DeployError(
            f"environment {env_name} has Python {env.get('python')}, python_version is {wanted_python}: "
            f"remove it ({prefix}/bin/conda env remove -p {envp}) and apply again, or set python_version"
        )

    yml_path = f"{prefix}/dlrig/{env_name}.environment.yml"
    files.directory(name="dlrig's folder in the conda prefix", path=f"{prefix}/dlrig", **owned_by(user))
    yml = files.template(
        name=f"environment.yml for {env_name}",
        src=template("environment.yml.j2"),
        dest=yml_path,
        env_name=env_name,
        python_version=wanted_python,
        channels=list(setting("conda_channels")),
        torch_index=src.index_url,
        mode="644",
        **owned_by(user),
    )
    conda = f"{prefix}/bin/conda"
    create = ["env", "create", "-p", envp, "-f", yml_path]
    cache_dir = setting("cache_dir")
    if cache_dir:
        for kind in ("pip", "wheels", "uv"):
            files.directory(name=f"cache_dir for {kind}", path=lockfile.cache_path(cache_dir, kind), user=user)
    locked = lockfile.for_host(setting("dlrig_lock_file"), host.name)
    if locked is not None and env is None and (locked.get("conda") or {}).get("explicit"):
        spec = f"{prefix}/dlrig/{env_name}.explicit.txt"
        files.put(name=f"the locked conda spec of {env_name}", src=StringIO(lockfile.explicit_text(locked)),
                  dest=spec, mode="644", user=user)
        server.shell(
            name=f"create the {env_name} environment from the locked explicit spec",
            commands=[" ".join(shlex.quote(a) for a in [conda, "create", "-y", "-p", envp, "--file", spec])],
            **as_user,
        )
    elif locked is not None and env is not None:
        pass  # the environment exists: the locked pip set below is what changes
    elif env is None:
        server.shell(
            name=f"create the {env_name} environment (conda env create)",
            commands=[" ".join(shlex.quote(a) for a in [conda, *create])],
            **as_user,
        )
    else:
        server.shell(
            name=f"update the {env_name} environment (environment.yml changed)",
            commands=[" ".join(shlex.quote(a) for a in [conda, "env", "update", "-p", envp, "-f",
                                                        yml_path])],
            _if=yml.did_change,
            **as_user,
        )

    pip_cache = f"cache-dir = {lockfile.cache_path(cache_dir, 'pip')}\n" if cache_dir else ""
    files.put(
        name=f"pip in {env_name} trusts the system CA store" + (" and caches in cache_dir" if cache_dir else ""),
        src=StringIO(f"# Managed by dlrig (role pytorch)\n[global]\ncert = {pyenv.SYSTEM_CA_BUNDLE}\n{pip_cache}"),
        dest=f"{envp}/pip.conf",
        mode="644",
        **owned_by(user),
    )

    if locked is not None:
        _install_locked(locked, env, python, envp, src, cache_dir, user)
        _register_kernel(env, home, env_name, python, as_user)
        return

    uv = setting("use_uv")
    if uv and "uv" not in (env or {}).get("dists", {}):
        links = [a for link in src.find_links for a in ("--find-links", link)]
        server.shell(
            name=f"uv in {env_name} (installs the packages below)",
            commands=[pyenv.install_command(python, [*links, "uv"], uv=False, wheelhouse=wheelhouse())],
            **as_user,
        )

    reason = pyenv.torch_needs_install(src, env)
    if reason:
        force = "CPU build" in reason
        server.shell(
            name=f"torch + torchvision from {src.index_url} ({reason})",
            commands=[download.watched_pip(pyenv.torch_install_command(python, src, force_reinstall=force, uv=uv,
                                                                       wheelhouse=wheelhouse()))],
            **as_user,
        )

    wanted = [*pyenv.BASE_PACKAGES, *setting("extra_packages")]
    dists = (env or {}).get("dists", {})
    if env is None or reason or pyenv.unsatisfied(wanted, dists):
        server.shell(
            name=f"fastai, ipykernel and extra_packages in {env_name}",
            commands=[packages_command(python, wanted, src.find_links, uv=uv, wheelhouse=wheelhouse())],
            **as_user,
        )

    _register_kernel(env, home, env_name, python, as_user)


def _register_kernel(env, home: str, env_name: str, python: str, as_user: dict) -> None:
    kernel = f"{home}/.local/share/jupyter/kernels/{env_name}/kernel.json"
    if env is None or not fact(File, path=kernel):
        server.shell(
            name=f"register the {env_name} Jupyter kernel",
            commands=[" ".join(shlex.quote(a) for a in [
                python, "-m", "ipykernel", "install", "--user", "--name", env_name,
                "--display-name", f"Python ({env_name})"])],
            **as_user,
        )


def _install_locked(locked: dict, env, python: str, envp: str, src: pyenv.TorchSource, cache_dir: str | None,
                    user: str) -> None:
    """apply --locked: exactly the locked pip set, hash-checked, no resolver (``--no-deps``); from
    the wheelhouse in cache_dir alone (``--no-index``) when every locked wheel is there, else from
    the torch index and PyPI, where the installer refuses a version or a hash that moved.

    With ``use_uv`` and uv in the locked set, uv does it (``uv pip install --require-hashes``: many
    times faster than pip), with its cache on cache_dir, where ``dlrig lock`` left every locked
    wheel unpacked with its hash: uv then links (copies, across disks) instead of unpacking; uv
    itself comes first, hash-checked by pip from the same wheelhouse (offline too). Without uv in
    the lock, or ``use_uv`` false: pip."""
    pins = {n: d["version"] for n, d in (locked.get("pip") or {}).items()}
    dists = (env or {}).get("dists", {})
    if env is not None and all(dists.get(n) == v for n, v in pins.items()):
        return
    wheelhouse = lockfile.cache_path(cache_dir, "wheels") if cache_dir else None
    wheels = sorted(d["file"] for d in (locked.get("pip") or {}).values())
    offline = bool(wheelhouse) and not fact(MissingFiles, folder=wheelhouse, names=wheels)
    sources = ["--no-index", "--find-links", wheelhouse] if offline else [
        "--extra-index-url", src.index_url, *(["--find-links", wheelhouse] if wheelhouse else [])]
    hashed = ["--require-hashes", "--no-deps", *sources, "-r"]
    uv = bool(setting("use_uv")) and "uv" in pins
    if uv and dists.get("uv") != pins["uv"]:
        uv_req = f"{envp}/dlrig-locked-uv.txt"
        files.put(name="the locked uv requirement (with its hash)",
                  src=StringIO(lockfile.requirements_text(locked, only=("uv",))), dest=uv_req, mode="644", user=user)
        server.shell(
            name=f"uv {pins['uv']} (locked) in the environment, for the locked set",
            commands=[pyenv.install_command(python, [*hashed, uv_req], uv=False)],
            **pyenv.as_user(user),
        )
    req = f"{envp}/dlrig-locked-requirements.txt"
    files.put(name="the locked pip requirements (with hashes)", src=StringIO(lockfile.requirements_text(locked)),
              dest=req, mode="644", user=user)
    server.shell(
        name=f"locked pip distributions ({len(pins)}, with {'uv' if uv else 'pip'} "
             + ("from cache_dir's wheelhouse)" if offline else "from the indexes)"),
        commands=[pyenv.install_command(python, [*hashed, req], uv=uv,
                                        uv_cache=lockfile.cache_path(cache_dir, "uv") if cache_dir else None)],
        **pyenv.as_user(user),
    )
