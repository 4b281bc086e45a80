"""The GPU stack of the current pyinfra host: its OS and GPUs from facts, resolved with its wishes.

:func:`resolve_host` runs :func:`dlrig.gpu.resolver.resolve` (pure) inside a deploy, once per host
and run (the GPU roles share the answer), and turns a refusal into pyinfra's ``DeployError``.
"""

from __future__ import annotations

from dlrig.gpu.resolver import Resolution, ResolveError, resolve
from dlrig.gpu.table import GpuInfo


def host_os() -> str:
    """``ubuntu-22.04`` / ``debian-12`` from the host's LinuxDistribution fact."""
    from pyinfra.facts.server import LinuxDistribution

    from dlrig.engine.facts import fact

    dist = fact(LinuxDistribution) or {}
    name = (dist.get("name") or "").lower()
    release = dist.get("release_meta", {}) or {}
    version = release.get("VERSION_ID") or str(dist.get("major") or "")
    if name.startswith("debian"):
        return f"debian-{str(version).split('.')[0]}"
    return f"{name.split()[0] if name else 'unknown'}-{version}"


def host_gpus() -> list[GpuInfo]:
    """The host's NVIDIA GPUs: ``driver_gpus`` when set, else its lspci (or sysfs) listing."""
    from dlrig.engine.facts import Lspci, fact
    from dlrig.engine.hostdata import setting
    from dlrig.gpu.table import UnknownGpu, lookup, parse_lspci

    override = setting("driver_gpus")
    try:
        if override:
            return [lookup(g) for g in override]
        return parse_lspci(fact(Lspci) or [])
    except UnknownGpu as e:
        raise ResolveError(str(e)) from None


def resolve_host() -> Resolution:
    """Resolve for the current pyinfra host from its facts and settings; DeployError if nothing fits."""
    from pyinfra import host
    from pyinfra.api import DeployError

    from dlrig.engine.hostdata import setting

    cached = getattr(host, "_dlrig_resolution", None)  # once per host and run: the roles share it
    if cached is not None:
        return cached
    try:
        cpu_only = bool(setting("cpu_only"))
        os = host_os()
        gpus = [] if cpu_only else host_gpus()
        if not cpu_only and not gpus:
            raise ResolveError("lspci shows no NVIDIA GPU; install the card, list it in driver_gpus "
                               "(e.g. ['10de:1e84']) to prepare the host anyway, or set cpu_only=True")
        res = resolve(
            gpus, os,
            driver_branch=setting("driver_branch"),
            cuda=setting("cuda_version"),
            torch=_torch_wish(),
            driver_source=setting("driver_source"),
            cpu_only=cpu_only,
            cuda_source=setting("cuda_source"),
        )
    except ResolveError as e:
        raise DeployError(f"{host.name}: {e}") from None
    host._dlrig_resolution = res
    return res


def _torch_wish() -> str | None:
    """``torch_version`` (declared by the pytorch role) when set; None means the resolver's choice."""
    from pyinfra import host

    from dlrig.engine.settings import registry

    if "torch_version" in registry():
        from dlrig.engine.hostdata import setting

        value = setting("torch_version")
    else:
        value = host.data.get("torch_version")
    if value in (None, "", "latest"):
        return None
    return ".".join(str(value).split(".")[:2])
