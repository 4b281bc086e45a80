"""Checks of role ``pytorch``: the environment, its Python, torch as configured, fastai, the user's
extra packages, the Jupyter kernel. (torch on the GPU is checked by test_gpu.py.)"""

from __future__ import annotations

import json
import shlex

from dlrig.engine import pyenv
from dlrig.verify.hints import HINT_MARK, HINT_SEP

APPLY = "run `dlrig apply INVENTORY --roles pytorch`"

_PROBE = (
    "import json, sys, importlib.metadata as m\n"
    "out = {'python': '%d.%d.%d' % sys.version_info[:3], 'dists': {}}\n"
    "for d in m.distributions():\n"
    "    n = d.metadata['Name']\n"
    "    if n: out['dists'][n.lower().replace('_', '-').replace('.', '-')] = d.version\n"
    "try:\n"
    "    import torch, fastai\n"
    "    out['import'] = 'ok'; out['cuda'] = torch.version.cuda\n"
    "except Exception as e:\n"
    "    out['import'] = repr(e)\n"
    "print(json.dumps(out))\n"
)


def _msg(reason: str, hint: str) -> str:
    return f"{reason}{HINT_SEP}{HINT_MARK}{hint}"


def _env(host, settings, owner, owner_home) -> tuple[str, dict | None, str]:
    python = pyenv.env_python(pyenv.conda_prefix(settings, owner, owner_home), settings.get("env_name") or "dl")
    res = host.run(f"timeout 600 {python} -c {shlex.quote(_PROBE)}")
    lines = [line for line in (res.stdout or "").splitlines() if line.startswith("{")]
    return python, (json.loads(lines[-1]) if lines else None), (res.stderr or "").strip()[-300:]


def test_environment_python(host, settings, owner, owner_home):
    python, env, err = _env(host, settings, owner, owner_home)
    assert env is not None, _msg(f"{python} does not run ({err})", APPLY)
    want = settings.get("python_version") or "3.11"
    assert pyenv.python_matches(want, env["python"]), _msg(
        f"the environment has Python {env['python']}, python_version is {want}",
        "remove the environment (conda env remove -p ...) and " + APPLY)


def test_torch_and_fastai_import(host, settings, owner, owner_home):
    python, env, err = _env(host, settings, owner, owner_home)
    assert env is not None, _msg(f"{python} does not run ({err})", APPLY)
    assert env.get("import") == "ok", _msg(f"`import torch, fastai` fails: {env.get('import')}", APPLY)
    want = settings.get("torch_version")
    have = env["dists"].get("torch")
    assert not want or pyenv.version_matches(want, have), _msg(
        f"torch {have} installed, torch_version is {want}", APPLY)
    if not settings.get("cpu_only"):
        assert env.get("cuda"), _msg(f"torch {have} is a CPU build on a GPU rig",
                                     "check pip_index_url (a CUDA index) and " + APPLY)


def test_extra_packages_installed(host, settings, owner, owner_home):
    python, env, err = _env(host, settings, owner, owner_home)
    assert env is not None, _msg(f"{python} does not run ({err})", APPLY)
    wanted = [*pyenv.BASE_PACKAGES, *(settings.get("extra_packages") or [])]
    missing = pyenv.unsatisfied(wanted, env["dists"])
    assert not missing, _msg(f"not installed or wrong version: {', '.join(missing)}", APPLY)


def test_jupyter_kernel_registered(host, settings, owner, owner_home):
    name = settings.get("env_name") or "dl"
    spec = host.file(f"{owner_home}/.local/share/jupyter/kernels/{name}/kernel.json")
    assert spec.exists, _msg(f"no Jupyter kernel {name} for {owner}", APPLY)
    python = pyenv.env_python(pyenv.conda_prefix(settings, owner, owner_home), name)
    assert json.loads(spec.content_string)["argv"][0] == python, _msg(
        f"kernel {name} runs another Python than {python}", APPLY)
