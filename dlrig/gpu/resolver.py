"""Which NVIDIA driver branch/flavour/source, CUDA toolkit, cuDNN and torch build fit a host.

:func:`resolve` is pure: GPUs, OS and wishes in, a :class:`Resolution` out, or :class:`ResolveError`
whose message is ONE line saying why and what would work. The compatibility tables below are the one
place for these facts (sources: ../shared/reference/compat-facts.md, each table names its own).
:func:`dlrig.engine.stack.resolve_host` runs it inside a pyinfra deploy from the host's facts.

Over 400 lines for a reason: the compatibility tables and the one function that reads them stay
together, so a change to a fact and to the rule that uses it is one diff.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from dlrig.gpu.table import GpuInfo, distro_cuda, distro_drivers, recorded_branches, table

# --- tables -------------------------------------------------------------------------------------

# Every CUDA toolkit release -> minimum Linux driver of its GA release (CUDA release notes, "CUDA
# Toolkit and Corresponding Driver Versions"; recorded in tools/sources/cuda/toolkit-driver-versions.md,
# which a unit test reads). 12.7 does not exist. 13.3-13.5 exist but their rows are not recorded.
CUDA_RELEASE_MIN_DRIVER: dict[str, str] = {
    "7.0": "346.46", "7.5": "352.31", "8.0": "367.48", "9.0": "384.81", "9.1": "390.46", "9.2": "396.26",
    "10.0": "410.48", "10.1": "418.39", "10.2": "440.33", "11.0": "450.51.05", "11.1": "455.23",
    "11.2": "460.27.03", "11.3": "465.19.01", "11.4": "470.42.01", "11.5": "495.29.05", "11.6": "510.39.01",
    "11.7": "515.43.04", "11.8": "520.61.05", "12.0": "525.60.13", "12.1": "530.30.02", "12.2": "535.54.03",
    "12.3": "545.23.06", "12.4": "550.54.14", "12.5": "555.42.02", "12.6": "560.28.03",
    "12.8": "570.26", "12.9": "575.51.03", "13.0": "580.65.06", "13.1": "590.44.01", "13.2": "595.45.04",
}
# The toolkits dlrig installs: 11.8 and newer (NVIDIA's apt repositories for the supported OSes).
CUDA_MIN_DRIVER: dict[str, str] = {c: d for c, d in CUDA_RELEASE_MIN_DRIVER.items()
                                   if tuple(map(int, c.split("."))) >= (11, 8)}
# Minor-version compatibility (docs.nvidia.com/deploy/cuda-compatibility): a CUDA major family runs
# (no PTX JIT of newer PTX) on any driver at or above the family floor. PyTorch wheels bundle their
# CUDA runtime, so for torch only this floor matters.
CUDA_FAMILY_FLOOR: dict[int, str] = {11: "450.80.02", 12: "525.60.13", 13: "580"}
# CUDA major -> lowest compute capability the toolkit still builds for (13.0 removed < sm_75).
CUDA_MIN_SM: dict[int, int] = {11: 35, 12: 50, 13: 75}

# Driver branch limits per architecture (NVIDIA Unix driver deprecation schedule): Kepler's last
# branch is 470; "580 will be the last to support" Maxwell, Pascal, Volta (sources disagree on 590
# and Pascal: conservative). Per DEVICE, the recorded NVIDIA lists decide (GpuInfo.driver_floor,
# open_floor, proprietary_branches, open_branches: tools/gpu_table.py); ARCH_MIN_BRANCH is only the
# fallback for an id no recorded list names (placed by its pci.ids chip).
ARCH_MAX_BRANCH: dict[str, int] = {"kepler": 470, "maxwell": 580, "pascal": 580, "volta": 580}
# The first branch a recorded NVIDIA list names any card of the architecture (gpus.json, from tools/sources/).
ARCH_MIN_BRANCH: dict[str, int] = {a: min(g.driver_floor for g in table().values() if g.arch == a and g.driver_floor)
                                   for a in ("ada", "hopper", "blackwell")}
# Open kernel modules need Turing or newer (GSP); the default flavour from branch 560; Blackwell
# requires them. Maxwell/Pascal/Volta need the proprietary flavour.
OPEN_DEFAULT_FROM = 560
OPEN_CAPABLE = {"turing", "ampere", "ada", "hopper", "blackwell"}
OPEN_REQUIRED = {"blackwell"}

# Supported OSes: the NVIDIA repo folder, what each source offers. Debian's own toolkit version
# (distro_cuda) comes from the recorded Debian package lists (gpus.json), like its driver.
OSES: dict[str, dict[str, Any]] = {
    "ubuntu-22.04": {"family": "ubuntu", "repo": "ubuntu2204", "default_source": "ubuntu",
                     "distro_cuda": "11.5", "distro_cuda_pkg": "nvidia-cuda-toolkit"},
    "ubuntu-24.04": {"family": "ubuntu", "repo": "ubuntu2404", "default_source": "ubuntu",
                     "distro_cuda": "12.0", "distro_cuda_pkg": "nvidia-cuda-toolkit"},
    "debian-12": {"family": "debian", "repo": "debian12", "default_source": "debian",
                  "distro_cuda": distro_cuda()["debian-12"], "distro_cuda_pkg": "nvidia-cuda-toolkit"},
    "debian-13": {"family": "debian", "repo": "debian13", "default_source": "debian",
                  "distro_cuda": distro_cuda()["debian-13"], "distro_cuda_pkg": "nvidia-cuda-toolkit"},
}
# Driver branches each source offers (ubuntu: Canonical's archive with signed linux-modules-nvidia;
# debian: non-free nvidia-driver, 535.x in Debian 12, 550.x in Debian 13; nvidia: NVIDIA's CUDA repo).
SOURCE_BRANCHES: dict[str, dict[str, tuple[int, ...]]] = {
    "ubuntu": {"ubuntu-22.04": (470, 535, 550, 570, 580), "ubuntu-24.04": (470, 535, 550, 570, 580)},
    # Debian's own nvidia-driver per release, from the recorded Debian package lists (gpus.json).
    "debian": {os: (int(v.split(".")[0]),) for os, v in distro_drivers().items()},
    "nvidia": {os: (535, 550, 555, 560, 565, 570, 575, 580, 590, 595) for os in OSES},
}
SOURCES = ("ubuntu", "nvidia", "debian")
KNOWN_BRANCHES: tuple[int, ...] = tuple(sorted({b for per_os in SOURCE_BRANCHES.values() for bs in per_os.values() for b in bs}))


def unknown_branch(branch: int) -> str | None:
    """Why ``branch`` is not a driver branch dlrig knows (any source, any OS), or None."""
    if branch in KNOWN_BRANCHES:
        return None
    return (f"driver branch {branch} is not one dlrig knows; use one of {', '.join(map(str, KNOWN_BRANCHES))} "
            "(or leave it unset for the resolver's choice)")
PREFERRED_BRANCH = 580  # production branch; the last for Maxwell/Pascal/Volta, CUDA 13.0's

# PyTorch wheels (pytorch/pytorch RELEASE.md): torch -> (python min, python max, variants).
TORCH: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "2.0": ("3.8", "3.11", ("cu117", "cu118")),
    "2.1": ("3.8", "3.11", ("cu118", "cu121")),
    "2.2": ("3.8", "3.11", ("cu118", "cu121")),
    "2.3": ("3.8", "3.11", ("cu118", "cu121")),
    "2.4": ("3.8", "3.12", ("cu118", "cu121", "cu124")),
    "2.5": ("3.9", "3.12", ("cu118", "cu121", "cu124")),
    "2.6": ("3.9", "3.13", ("cu118", "cu124", "cu126")),
    "2.7": ("3.9", "3.13", ("cu118", "cu126", "cu128")),
    "2.8": ("3.9", "3.13", ("cu126", "cu128", "cu129")),
    "2.9": ("3.10", "3.14", ("cu126", "cu128", "cu130")),
    "2.10": ("3.10", "3.14", ("cu126", "cu128", "cu130")),
    "2.11": ("3.10", "3.14", ("cu126", "cu128", "cu130")),
    "2.12": ("3.10", "3.14", ("cu126", "cu130", "cu132")),  # (?) in the facts: conservative use
    "2.13": ("3.10", "3.15", ("cu126", "cu130", "cu132")),
    "2.14": ("3.10", "3.15", ("cu126", "cu130", "cu132")),
}
DEFAULT_TORCH = "2.14"
INDEX = "https://download.pytorch.org/whl/{variant}"
_OLD = (50, 60, 70, 75, 80, 86, 90)


def torch_arches(torch: str, variant: str) -> tuple[int, ...]:
    """sm_XY numbers in the torch wheel (facts file: "Architectures in the wheels")."""
    minor = int(torch.split(".")[1])
    if variant in ("cu117", "cu118", "cu121", "cu124", "cu126"):
        return _OLD
    if variant in ("cu128", "cu129"):
        if minor == 7:
            return (75, 80, 86, 90, 100, 120)
        if 8 <= minor <= 10:
            return (70, 75, 80, 86, 90, 100, 120)
        return (75, 80, 86, 90, 100, 120)
    return (75, 80, 86, 90, 100, 120)  # cu130, cu132


# cuDNN support matrix: 8.9 for CUDA 11.x/12.0-12.2; 9.0-9.10 CUDA 12 (CC 5.0-12.0), 9.10 the last
# with Maxwell/Pascal/Volta; 9.17+ CUDA 12/13, CC >= 7.5 only.


def _v(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def _branch(driver_version: str) -> int:
    return int(driver_version.split(".")[0])


def _cuda_of(variant: str) -> str:
    digits = variant[2:]
    return f"{digits[:2]}.{digits[2:]}"


def flavor_for(gpus: Sequence[GpuInfo], branch: int) -> str:
    """open for Turing+ from branch 560 when NVIDIA's open modules list every card by then (always on
    Blackwell, which needs them), else proprietary."""
    arches = {g.arch for g in gpus}
    if arches - OPEN_CAPABLE:
        return "proprietary"
    if arches & OPEN_REQUIRED:
        return "open"
    return "open" if branch >= OPEN_DEFAULT_FROM and all(floor(g, "open") <= branch for g in gpus) else "proprietary"


def ceiling(g: GpuInfo) -> int:
    """The last branch that supports the card: its legacy branch from the lists, else its architecture's."""
    return g.last_branch or ARCH_MAX_BRANCH.get(g.arch, 10_000)


def floor(g: GpuInfo, flavor: str) -> int:
    """The first branch NVIDIA's recorded lists give the card for this flavour (arch fallback off-table)."""
    if not g.in_table:
        return ARCH_MIN_BRANCH.get(g.arch, 0)
    if flavor == "open":
        return g.open_floor if g.open_floor is not None else 10_000
    return g.driver_floor if g.driver_floor is not None else 10_000


def supports(g: GpuInfo, branch: int, flavor: str) -> bool:
    """Does driver `branch` in this flavour support the card: at or above the first branch NVIDIA's
    recorded lists name it for that flavour, and not past its last branch.

    Only floors and ceilings count: a later list that omits a device is not taken as dropping it
    (the README lists after 470 omit, e.g., the Tesla T4 that those drivers still run). Off-table ids
    (no list names them) fall back to their architecture's bounds."""
    return floor(g, flavor) <= branch <= ceiling(g)


def _support_why(g: GpuInfo, branch: int, flavor: str) -> str:
    """Why `branch` does not support the card, and which branches do: one clause. Every caller has
    already bounded `branch` by the cards' ceilings, so the reason is always the floor."""
    label = f"{g.name} ({g.pci_id})"
    fl = floor(g, flavor)
    kind = "open kernel modules" if flavor == "open" else "driver"
    if fl >= 10_000:
        return f"no recorded NVIDIA list names {label} for the {kind}"
    return f"NVIDIA's {kind} lists {label} from branch {fl} on"


# --- result -------------------------------------------------------------------------------------


class ResolveError(ValueError):
    """No combination fits; ``str(e)`` is one line: why, and what would work."""


@dataclass(frozen=True)
class Driver:
    branch: int
    flavor: str  # open | proprietary
    source: str  # ubuntu | nvidia | debian
    dkms: bool  # the kernel module is built on the host (Secure Boot needs MOK enrolment)

    def as_json(self) -> dict:
        return {"branch": self.branch, "flavor": self.flavor, "source": self.source}


@dataclass(frozen=True)
class Cuda:
    version: str
    source: str  # nvidia | distro

    def as_json(self) -> dict:
        return {"version": self.version, "source": self.source}


@dataclass(frozen=True)
class Cudnn:
    version: str  # "9", "9.10", "8.9", or "distro"
    packages: tuple[str, ...]
    pin: str | None  # apt version pin ("9.10.*") or None

    def as_json(self) -> dict:
        return {"version": self.version, "packages": list(self.packages)}


@dataclass(frozen=True)
class Torch:
    version: str
    variant: str
    index_url: str

    def as_json(self) -> dict:
        return {"version": self.version, "variant": self.variant, "index_url": self.index_url}


@dataclass(frozen=True)
class Resolution:
    os: str
    gpus: tuple[GpuInfo, ...]
    driver: Driver | None
    cuda: Cuda | None
    cudnn: Cudnn | None
    torch: Torch
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def cpu_only(self) -> bool:
        return self.driver is None

    def as_json(self) -> dict:
        return {
            "os": self.os,
            "gpus": [g.as_json() for g in self.gpus],
            "driver": self.driver.as_json() if self.driver else None,
            "cuda": self.cuda.as_json() if self.cuda else None,
            "cudnn": self.cudnn.as_json() if self.cudnn else None,
            "torch": self.torch.as_json(),
            "notes": list(self.notes),
        }


# --- resolution ---------------------------------------------------------------------------------


def _cards(gpus: Sequence[GpuInfo], pred) -> str:
    names = sorted({g.name for g in gpus if pred(g)})
    return ", ".join(names)


def _torch_version(torch: str | None, python: str | None) -> str:
    if torch is None:
        if python is None:
            return DEFAULT_TORCH
        fitting = [t for t, (lo, hi, _) in TORCH.items() if _v(lo) <= _v(python) <= _v(hi)]
        if not fitting:
            lo, hi, _ = TORCH[DEFAULT_TORCH]
            raise ResolveError(f"no torch release in dlrig's table supports Python {python}; "
                               f"use Python {lo}-{hi} (torch {DEFAULT_TORCH})")
        return max(fitting, key=_v)
    t = ".".join(str(torch).split(".")[:2])
    if t not in TORCH:
        raise ResolveError(f"torch {torch} is not in dlrig's table; use one of {', '.join(TORCH)}")
    lo, hi, _ = TORCH[t]
    if python is not None and not _v(lo) <= _v(python) <= _v(hi):
        other = [x for x, (a, b, _) in TORCH.items() if _v(a) <= _v(python) <= _v(b)]
        alt = f" or torch {max(other, key=_v)}" if other else ""
        raise ResolveError(f"torch {t} supports Python {lo}-{hi}, not {python}; use Python {lo}-{hi}{alt}")
    return t


def resolve(
    gpus: Iterable[GpuInfo],
    os: str,
    driver_branch: int | None = None,
    cuda: str | None = None,
    torch: str | None = None,
    driver_source: str | None = None,
    python: str | None = None,
    cpu_only: bool = False,
    cuda_source: str | None = None,
) -> Resolution:
    """The driver, CUDA, cuDNN and torch build for these GPUs on this OS, honouring the wishes."""
    gpus = tuple(gpus)
    if os not in OSES:
        raise ResolveError(f"OS {os!r} is not supported; use one of {', '.join(OSES)}")
    torch_v = _torch_version(torch, python)
    if cpu_only:
        return Resolution(os, (), None, None, None, Torch(torch_v, "cpu", INDEX.format(variant="cpu")),
                          ("cpu_only: no NVIDIA driver, CUDA or cuDNN; CPU build of torch",))
    if not gpus:
        raise ResolveError("no NVIDIA GPU given or found; add one (--gpu 10de:1e84) or set cpu_only=True")
    if driver_source is not None and driver_source not in SOURCES:
        raise ResolveError(f"driver_source {driver_source!r} is not one of {', '.join(SOURCES)}")
    if cuda_source is not None and cuda_source not in ("nvidia", "distro"):
        raise ResolveError(f"cuda_source {cuda_source!r} is not one of nvidia, distro")
    notes: list[str] = []
    arches = {g.arch for g in gpus}

    # Cards no supported stack serves.
    if "kepler" in arches:
        kepler = [g for g in gpus if g.arch == "kepler"]
        sms = "/".join(sorted({f"sm_{g.sm}" for g in kepler}))
        lowest = min(min(torch_arches(t, v)) for t, (_, _, vs) in TORCH.items() for v in vs)
        last = max(ceiling(g) for g in kepler)
        listed = " (NVIDIA's README lists it under the 470.xx legacy driver)" if all(g.last_branch for g in kepler) else ""
        newest = max((c for c, d in CUDA_RELEASE_MIN_DRIVER.items() if _branch(d) <= last), key=_v)
        raise ResolveError(
            f"{_cards(gpus, lambda g: g.arch == 'kepler')} (Kepler, {sms}): the last driver branch for it is "
            f"{last}{listed}, which runs CUDA <= {newest} toolkits at GA level, and every torch build in dlrig's table (torch {min(TORCH, key=_v)}-{max(TORCH, key=_v)}) "
            f"starts at sm_{lowest}, so none runs on it; torch builds that carried {sms} are older than dlrig's torch "
            "table and dlrig does not offer them; use a Maxwell-or-newer card or cpu_only=True")
    if cuda is not None:
        cuda = str(cuda)
        if cuda in CUDA_RELEASE_MIN_DRIVER and cuda not in CUDA_MIN_DRIVER:
            raise ResolveError(f"CUDA {cuda} is older than the toolkits dlrig installs; use one of {', '.join(CUDA_MIN_DRIVER)}")
        if cuda not in CUDA_MIN_DRIVER:
            raise ResolveError(f"CUDA {cuda} does not exist or is not in dlrig's table; use one of {', '.join(CUDA_MIN_DRIVER)}")

    # Driver flavour: open for Turing+ (required on Blackwell), proprietary for Maxwell-Volta.
    legacy = {a for a in arches if a not in OPEN_CAPABLE}
    if legacy and arches & OPEN_REQUIRED:
        raise ResolveError(
            f"{_cards(gpus, lambda g: g.arch in OPEN_REQUIRED)} needs the open kernel modules but "
            f"{_cards(gpus, lambda g: g.arch in legacy)} needs the proprietary ones; one driver cannot serve both: "
            "put them in different machines")

    # Branch bounds from the cards.
    hi = min([ARCH_MAX_BRANCH[a] for a in arches if a in ARCH_MAX_BRANCH], default=10_000)
    lo = max([ARCH_MIN_BRANCH[g.arch] for g in gpus if not g.in_table and g.arch in ARCH_MIN_BRANCH], default=0)
    min_sm = min(g.sm for g in gpus)
    if cuda is not None:
        major = int(cuda.split(".")[0])
        if min_sm < CUDA_MIN_SM[major]:
            old = _cards(gpus, lambda g: g.sm < CUDA_MIN_SM[major])
            raise ResolveError(f"CUDA {cuda} has no sm_{min_sm} support ({old}); use CUDA <= 12.9 for these cards")
        need = _branch(CUDA_MIN_DRIVER[cuda])
        if need > hi:
            raise ResolveError(
                f"CUDA {cuda} needs driver >= {CUDA_MIN_DRIVER[cuda]} but {_cards(gpus, lambda g: g.arch in ARCH_MAX_BRANCH)} "
                f"is supported only up to branch {hi}; use CUDA <= {_max_cuda_for(hi)}")
        lo = max(lo, need)
    hi = min([hi] + [ceiling(g) for g in gpus])
    if driver_branch is not None:
        driver_branch = int(driver_branch)
        if unknown_branch(driver_branch):
            raise ResolveError(unknown_branch(driver_branch))
        pinned_flavor = flavor_for(gpus, driver_branch)
        for g in gpus:
            if driver_branch <= hi and not supports(g, driver_branch, pinned_flavor):
                fl = floor(g, pinned_flavor)
                if fl < 10_000:
                    fix = f"use driver_branch {fl} or newer"
                elif pinned_flavor == "open":  # no open list names it, and another card needs open modules
                    fix = "it needs the proprietary modules: put it in another machine than the open-only cards"
                else:
                    fix = "put it in another machine"
                raise ResolveError(f"driver {driver_branch} ({pinned_flavor} modules) does not support it: "
                                   f"{_support_why(g, driver_branch, pinned_flavor)}; {fix}")
        if driver_branch > hi:
            raise ResolveError(
                f"driver {driver_branch} does not support {_cards(gpus, lambda g: g.arch in ARCH_MAX_BRANCH)} "
                f"(last branch for them: {hi}); use driver_branch {hi} or lower")
        if driver_branch < lo:
            why = (f"CUDA {cuda} needs >= {CUDA_MIN_DRIVER[cuda]}" if cuda and _branch(CUDA_MIN_DRIVER[cuda]) == lo
                   else f"{_cards(gpus, lambda g: ARCH_MIN_BRANCH.get(g.arch, 0) == lo)} needs >= {lo}")
            raise ResolveError(f"driver {driver_branch} is too old: {why}; use driver_branch {lo} or newer")
        lo = hi = driver_branch
    if lo > hi:
        raise ResolveError(f"these cards need a driver branch >= {lo} and <= {hi}; no branch fits: split the cards")

    # Source and branch.
    default_source = OSES[os]["default_source"]
    tried = [driver_source] if driver_source else [default_source, "nvidia"]
    driver = None
    for source in tried:
        offered = SOURCE_BRANCHES[source].get(os)
        if not offered:
            if driver_source:
                ok = [s for s in SOURCES if os in SOURCE_BRANCHES[s]]
                raise ResolveError(f"driver_source {source!r} is not available on {os}; use one of {', '.join(ok)}")
            continue
        fits = [b for b in offered if lo <= b <= hi
                and all(supports(g, b, flavor_for(gpus, b)) for g in gpus)]
        if not fits:
            if driver_source:
                want = _branches(lo, hi)
                bad = [(g, b) for b in offered for g in gpus
                       if lo <= b <= hi and not supports(g, b, flavor_for(gpus, b))]
                if bad:
                    want += f" that supports the cards ({_support_why(bad[0][0], bad[0][1], flavor_for(gpus, bad[0][1]))})"
                others = [s for s in SOURCES if s != source and any(
                    lo <= b <= hi and all(supports(g, b, flavor_for(gpus, b)) for g in gpus)
                    for b in SOURCE_BRANCHES[s].get(os, ()))]
                alt = f"; use driver_source {others[0]!r}" if others else ""
                raise ResolveError(
                    f"driver_source {source!r} on {os} offers branches {', '.join(map(str, offered))}, "
                    f"these cards and wishes need {want}{alt}")
            continue
        # The production branch when it fits, else the fitting branch closest to it.
        branch = min(fits, key=lambda b: (abs(b - PREFERRED_BRANCH), -b))
        if source != tried[0]:
            first = tried[0]
            offered0 = SOURCE_BRANCHES[first].get(os, ())
            own = distro_drivers().get(os) if first == "debian" else None
            why = ""
            for b in offered0:
                bad = [g for g in gpus if lo <= b <= hi and not supports(g, b, flavor_for(gpus, b))]
                if bad:
                    why = f": {_support_why(bad[0], b, flavor_for(gpus, b))}"
                    break
            what = f"{os}'s own nvidia-driver {own}" if own else \
                f"{first} source ({', '.join(map(str, offered0))})"
            notes.append(f"{what} offers no fitting branch{why}; using NVIDIA's repository")
        flavor = flavor_for(gpus, branch)
        if flavor == "proprietary" and branch >= OPEN_DEFAULT_FROM and not legacy:
            notes.append(f"proprietary kernel modules: NVIDIA's open-gpu-kernel-modules lists "
                         f"{_cards(gpus, lambda g: floor(g, 'open') > branch)} only from a later branch or not at all")
        driver = Driver(branch, flavor, source, dkms=source != "ubuntu")
        break
    if driver is None:
        offered = sorted({b for src in SOURCES for b in SOURCE_BRANCHES[src].get(os, ()) if lo <= b <= hi})
        why = next((_support_why(g, b, flavor_for(gpus, b)) for b in offered for g in gpus
                    if not supports(g, b, flavor_for(gpus, b))), "")
        raise ResolveError(f"no driver source on {os} offers {_branches(lo, hi)} that supports these cards"
                           f"{' (' + why + ')' if why else ''}; check driver_branch and cuda_version")
    for g in gpus:
        if not g.in_table:
            notes.append(f"{g.pci_id} ({g.name}) is not in dlrig's GPU table: placed by its pci.ids chip {g.chip} "
                         f"({g.arch}); its driver floor comes from the architecture only. To add it, record a newer "
                         "NVIDIA supported-GPU list under tools/sources/ and run tools/gpu_table.py")

    # torch build: the newest variant whose CUDA the driver serves at GA level and whose wheels
    # carry the cards' architectures; else one that runs through minor-version compatibility.
    variants = TORCH[torch_v][2]
    def covers(variant: str) -> bool:
        arch_list = torch_arches(torch_v, variant)
        return all(any(a // 10 == g.sm // 10 and a <= g.sm for a in arch_list) for g in gpus)

    def ga_ok(variant: str) -> bool:
        c = _cuda_of(variant)
        need = CUDA_MIN_DRIVER.get(c, CUDA_FAMILY_FLOOR[int(c.split(".")[0])])
        return _branch(need) <= driver.branch

    def floor_ok(variant: str) -> bool:
        return _branch(CUDA_FAMILY_FLOOR[int(_cuda_of(variant).split(".")[0])]) <= driver.branch

    usable = [v for v in variants if covers(v)]
    if not usable:
        raise ResolveError(
            f"torch {torch_v} has no build for sm_{min(g.sm for g in gpus if not covers_any(torch_v, g))} "
            f"({_cards(gpus, lambda g: not covers_any(torch_v, g))}): its builds are {', '.join(variants)}; "
            f"use torch {_torch_for(gpus)}")
    if cuda is not None:
        same_major = [v for v in usable if _cuda_of(v).split(".")[0] == cuda.split(".")[0] and floor_ok(v)]
        if not same_major:
            raise ResolveError(
                f"torch {torch_v} has no CUDA {cuda.split('.')[0]} build for these cards ({', '.join(usable)}); "
                f"use cuda_version {_cuda_of(max(usable, key=lambda v: _v(_cuda_of(v))))} or another torch")
        ok = [v for v in same_major if ga_ok(v)] or same_major
        # The build whose CUDA is the wish, else the closest one not above it, else the lowest above.
        below = [v for v in ok if _v(_cuda_of(v)) <= _v(cuda)]
        pool = [max(below, key=lambda v: _v(_cuda_of(v)))] if below else [min(ok, key=lambda v: _v(_cuda_of(v)))]
    else:
        pool = [v for v in usable if ga_ok(v)] or [v for v in usable if floor_ok(v)]
    if not pool:
        raise ResolveError(
            f"torch {torch_v}'s builds for these cards ({', '.join(usable)}) need a newer driver than {driver.branch}; "
            f"use driver_branch >= {min(_branch(CUDA_FAMILY_FLOOR[int(_cuda_of(v)[:2])]) for v in usable)} or an older torch")
    variant = max(pool, key=lambda v: _v(_cuda_of(v)))
    if not ga_ok(variant):
        notes.append(f"torch {variant} runs on driver {driver.branch} through CUDA minor-version compatibility "
                     f"(CUDA {_cuda_of(variant)} GA wants >= {CUDA_MIN_DRIVER.get(_cuda_of(variant), '?')})")
    torch_res = Torch(torch_v, variant, INDEX.format(variant=variant))

    # CUDA toolkit: the wish, else torch's CUDA (nvcc matching torch builds extensions), from the
    # distro only where asked or where the driver itself comes from Debian.
    os_info = OSES[os]
    src = cuda_source or ("distro" if driver.source == "debian" and cuda in (None, os_info["distro_cuda"]) else "nvidia")
    if src == "distro":
        if cuda is not None and cuda != os_info["distro_cuda"]:
            raise ResolveError(f"{os}'s own toolkit is CUDA {os_info['distro_cuda']}, not {cuda}; "
                               f"use cuda_source 'nvidia' for CUDA {cuda}")
        cuda_v = os_info["distro_cuda"]
        if min_sm < CUDA_MIN_SM[int(cuda_v.split('.')[0])]:
            raise ResolveError(f"{os}'s CUDA {cuda_v} cannot build for sm_{min_sm}; use cuda_source 'nvidia'")
        need = CUDA_MIN_DRIVER.get(cuda_v, CUDA_FAMILY_FLOOR[int(cuda_v.split('.')[0])])
        if _branch(need) > driver.branch:
            notes.append(f"CUDA {cuda_v} wants driver >= {need}; runs with limits on {driver.branch}")
        if cuda_v != _cuda_of(variant):
            notes.append(f"nvcc is CUDA {cuda_v} ({os}'s nvidia-cuda-toolkit) while torch uses CUDA {_cuda_of(variant)}: "
                         "building CUDA extensions needs matching versions; set cuda_source 'nvidia' for that")
    else:
        cuda_v = cuda or _cuda_of(variant)
        if cuda is None and (cuda_v not in CUDA_MIN_DRIVER or _branch(CUDA_MIN_DRIVER[cuda_v]) > driver.branch):
            # torch's CUDA is not in our toolkit table (cu117) or needs a newer driver at GA level:
            # the newest toolkit this driver serves, not above torch's CUDA.
            fitting = [c for c in CUDA_MIN_DRIVER if _branch(CUDA_MIN_DRIVER[c]) <= driver.branch
                       and CUDA_MIN_SM[int(c.split('.')[0])] <= min_sm and _v(c) <= _v(_cuda_of(variant))]
            if not fitting:
                raise ResolveError(f"no CUDA toolkit in dlrig's table runs on driver {driver.branch} for these cards; "
                                   f"use a newer driver_branch")
            cuda_v = max(fitting, key=_v)
            notes.append(f"CUDA toolkit {cuda_v} (driver {driver.branch} serves no newer one) differs from torch's "
                         f"CUDA {_cuda_of(variant)}: extensions built with nvcc may need matching versions")
        if _branch(CUDA_MIN_DRIVER[cuda_v]) > driver.branch:
            raise ResolveError(f"CUDA {cuda_v} needs driver >= {CUDA_MIN_DRIVER[cuda_v]}, resolved branch is "
                               f"{driver.branch}; set driver_branch >= {_branch(CUDA_MIN_DRIVER[cuda_v])}")
    cuda_res = Cuda(cuda_v, src)
    cudnn_res = _cudnn(cuda_res, min_sm, os)
    if arches & {"maxwell", "pascal", "volta"}:
        notes.append(f"{_cards(gpus, lambda g: g.arch in ('maxwell', 'pascal', 'volta'))}: driver 580 is the last "
                     "branch for Maxwell/Pascal/Volta and CUDA 13 dropped them; this stack stays on CUDA 12")
    if driver.dkms:
        notes.append("driver modules are built with DKMS: with Secure Boot on, set driver_mok_password to enrol the key")
    return Resolution(os, gpus, driver, cuda_res, cudnn_res, torch_res, tuple(notes))


def covers_any(torch_v: str, g: GpuInfo) -> bool:
    return any(any(a // 10 == g.sm // 10 and a <= g.sm for a in torch_arches(torch_v, v)) for v in TORCH[torch_v][2])


def _torch_for(gpus: Sequence[GpuInfo]) -> str:
    ok = [t for t in TORCH if all(covers_any(t, g) for g in gpus)]
    if not ok:
        return "(none in dlrig's table)"
    return f">= {min(ok, key=_v)}" if max(ok, key=_v) == DEFAULT_TORCH else f"<= {max(ok, key=_v)}"


def _branches(lo: int, hi: int) -> str:
    """The branches the cards and wishes allow, in words (0 and 10_000 are the open ends)."""
    if lo == hi:
        return f"branch {lo}"
    if hi >= 10_000:
        return f"a branch >= {lo}" if lo else "a branch"
    return f"a branch in {lo}-{hi}"


def _max_cuda_for(branch: int) -> str:
    return max((c for c, d in CUDA_MIN_DRIVER.items() if _branch(d) <= branch), key=_v)


def _cudnn(cuda: Cuda, min_sm: int, os: str) -> Cudnn:
    from dlrig.gpu.packages import nvidia_cudnn, nvidia_cudnn8_pin

    major = int(cuda.version.split(".")[0])
    if cuda.source == "distro":
        return Cudnn("distro", ("nvidia-cudnn",), None)
    if major == 13:
        return Cudnn("9", nvidia_cudnn(9, cuda.version), None)
    if major == 12:
        if min_sm < 75:  # 9.10 is the last cuDNN with Maxwell/Pascal/Volta (any CUDA 12.x)
            return Cudnn("9.10", nvidia_cudnn(9, cuda.version), "9.10.*")
        return Cudnn("9", nvidia_cudnn(9, cuda.version), None)
    return Cudnn("8.9", nvidia_cudnn(8, cuda.version), nvidia_cudnn8_pin("8.9.*", "11.8"))
