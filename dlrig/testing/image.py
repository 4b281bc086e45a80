"""The golden image of Debian test hosts: debootstrap minbase + openssh-server, python3, sudo and a
passwordless-sudo user ``dlrig`` with a generated ed25519 key, built once and cached as
``golden-<recipe hash>.tar.zst`` (rebuilt when the recipe, the suite or the mirrors change).

The suite is a parameter: Debian 12 (bookworm, the default) or Debian 13 (trixie), see ``SUITES``."""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable

from dlrig.testing.system import (
    HostError,
    _clean_env,
    _FileLock,
    _require_root,
    _require_tools,
    _run,
    _safe_rmtree,
    _umount_all_under,
    _unescape_mountinfo,
)

log = logging.getLogger(__name__)


#: Bump to force a rebuild of every cached golden image.
RECIPE_VERSION = 1
SUITE = "bookworm"
#: Debian suites a test host can run -> dlrig's OS name for it (dlrig.gpu.resolver.OSES).
SUITES: dict[str, str] = {"bookworm": "debian-12", "trixie": "debian-13"}
#: Packages added to debootstrap's minbase (keep it small: roles install the rest).
PACKAGES: tuple[str, ...] = (
    "openssh-server",
    "python3",
    "sudo",
    "ca-certificates",
    "systemd",  # a real Debian has systemctl (enable works in a chroot, start does not)
    "iproute2",  # ss/ip: testinfra's socket checks
    "procps",  # ps: testinfra's process checks
)
COMPONENTS = "main contrib non-free non-free-firmware"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
USER = "dlrig"
UID = 1000



def default_cache_dir() -> Path:
    """``$DLRIG_CACHE`` or ``~/.cache/dlrig``."""
    return Path(os.environ.get("DLRIG_CACHE") or Path.home() / ".cache" / "dlrig")


def default_mirror() -> str:
    return os.environ.get("DLRIG_DEBIAN_MIRROR") or DEFAULT_MIRROR


def default_security_mirror() -> str:
    return os.environ.get("DLRIG_DEBIAN_SECURITY_MIRROR") or DEFAULT_SECURITY_MIRROR


def check_suite(suite: str) -> str:
    if suite not in SUITES:
        raise HostError(f"suite {suite!r} is not a test host suite; use one of {', '.join(SUITES)}")
    return suite


def sources_list(mirror: str, security_mirror: str) -> str:
    """The image's /etc/apt/sources.list (all four components, updates and security)."""
    return (
        f"deb {mirror} {SUITE} {COMPONENTS}\n"
        f"deb {mirror} {SUITE}-updates {COMPONENTS}\n"
        f"deb {security_mirror} {SUITE}-security {COMPONENTS}\n"
    )


def deb822_sources(mirror: str, security_mirror: str, suite: str) -> str:
    """/etc/apt/sources.list.d/debian.sources of a newer suite: the same repositories in deb822,
    the format apt 3 (Debian 13) recommends (``apt modernize-sources``)."""
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    return (
        f"Types: deb\nURIs: {mirror}\nSuites: {suite} {suite}-updates\nComponents: {COMPONENTS}\n"
        f"Signed-By: {keyring}\n\n"
        f"Types: deb\nURIs: {security_mirror}\nSuites: {suite}-security\nComponents: {COMPONENTS}\n"
        f"Signed-By: {keyring}\n"
    )


def recipe_hash(mirror: str | None = None, security_mirror: str | None = None, suite: str = SUITE) -> str:
    """Hash of everything that shapes the image: recipe code, package list, suite, mirrors."""
    h = hashlib.sha256()
    for part in (
        f"v{RECIPE_VERSION}", check_suite(suite), COMPONENTS, ",".join(PACKAGES), USER, str(UID),
        mirror or default_mirror(), security_mirror or default_security_mirror(),
        inspect.getsource(sources_list), inspect.getsource(deb822_sources), inspect.getsource(_build_rootfs),
        inspect.getsource(add_test_user), inspect.getsource(strip_apt_lists),
    ):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def image_key(image: Path) -> Path:
    """The private SSH key that logs in as ``dlrig`` on hosts made from ``image``."""
    name = image.name.removesuffix(".tar.zst")
    return image.with_name(name + ".key")


def _image_lock(image: Path) -> Path:
    return image.with_name("." + image.name.removesuffix(".tar.zst") + ".lock")


def _lower_dir(image: Path) -> Path:
    return image.with_name(image.name.removesuffix(".tar.zst") + ".root")


def _overlay_lowers() -> set[str]:
    """Lower dirs of the overlays mounted in this mount namespace (i.e. in use by hosts)."""
    lowers = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            if post.startswith("overlay "):
                for opt in post.split()[2].split(","):
                    if opt.startswith("lowerdir="):
                        lowers.update(_unescape_mountinfo(opt[9:]).split(":"))
    return lowers


def _remove_cached(paths: Iterable[Path]) -> list[Path]:
    """Remove cache entries, skipping extracted roots that running hosts still use."""
    in_use = _overlay_lowers()
    removed = []
    for p in paths:
        if p.is_dir() and str(p) in in_use:
            log.warning("%s is in use by running test hosts; kept", p)
            continue
        if p.exists():
            _safe_rmtree(p)
            removed.append(p)
    return removed


def prune_cache(cache_dir: Path | None = None, keep: Iterable[Path] = ()) -> list[Path]:
    """Delete cached golden images (tarball, key, extracted root) other than ``keep``.

    Images whose extracted root is in use by running hosts are kept. Returns what was removed.
    """
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    keep_stems = {Path(k).name.removesuffix(".tar.zst") for k in keep}
    doomed = [p for p in cache_dir.glob("golden-*")
              if p.name.split(".")[0] not in keep_stems]
    # temp dirs of builds/extractions killed half-way (a real one takes minutes, not hours)
    old = time.time() - 3 * 3600
    doomed += [p for pat in (".build-*", ".extract-*") for p in cache_dir.glob(pat)
               if p.is_dir() and p.stat().st_mtime < old]
    return _remove_cached(doomed)


def golden_image(
    cache_dir: Path | None = None,
    mirror: str | None = None,
    security_mirror: str | None = None,
    suite: str = SUITE,
) -> Path:
    """Return the cached golden image of ``suite`` for the current recipe, building it if missing.

    Concurrent callers (several pytest processes) wait on a lock and build only once.
    """
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    mirror = mirror or default_mirror()
    security_mirror = security_mirror or default_security_mirror()
    digest = recipe_hash(mirror, security_mirror, suite)
    image = cache_dir / f"golden-{digest}.tar.zst"
    if image.exists() and image_key(image).exists():
        return image
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _FileLock(_image_lock(image)):
        if image.exists() and image_key(image).exists():
            return image
        t0 = time.monotonic()
        log.info("building golden image %s (debootstrap %s from %s)", image, suite, mirror)
        _build_image(image, mirror, security_mirror, suite)
        log.info("built %s in %.1f s", image, time.monotonic() - t0)
    return image


def _build_image(image: Path, mirror: str, security_mirror: str, suite: str = SUITE) -> None:
    """Build into a temp dir beside ``image``, then rename key and image into place."""
    _require_root()
    _require_tools("debootstrap", "ssh-keygen", "tar", "zstd", "chroot")
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=image.parent))
    try:
        root = tmp / "root"
        key = tmp / "key"
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{USER}@dlrig-test-hosts",
              "-f", str(key)], "ssh-keygen")
        _build_rootfs(root, mirror, security_mirror, key.with_suffix(".pub").read_text(), suite)
        packed = tmp / image.name
        _run(["tar", "--numeric-owner", "--one-file-system", "-I", "zstd -T0 -3", "-cpf",
              str(packed), "-C", str(root), "."], "packing the golden image")
        key.chmod(0o600)
        os.replace(key.with_suffix(".pub"), image_key(image).with_name(image_key(image).name + ".pub"))
        os.replace(key, image_key(image))
        # an extracted root left from a deleted image of the same recipe has the old key
        if _remove_cached([_lower_dir(image)]) == [] and _lower_dir(image).exists():
            raise HostError(f"{_lower_dir(image)} (from a deleted image) is in use by running "
                            "hosts: stop them, then build again")
        os.replace(packed, image)  # last: the image's presence means "complete"
    finally:
        with contextlib.suppress(HostError):
            _umount_all_under(tmp)
        _safe_rmtree(tmp)


def _build_rootfs(root: Path, mirror: str, security_mirror: str, pubkey: str, suite: str = SUITE) -> None:
    """debootstrap a ``suite`` minbase into ``root`` and make it a test host."""
    root.mkdir(parents=True)
    try:
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
              suite, str(root), mirror], "debootstrap", env=_clean_env())
    except HostError as e:
        tail = ""
        with contextlib.suppress(OSError):
            tail = (root / "debootstrap/debootstrap.log").read_text()[-3000:]
        raise HostError(f"{e}\n--- debootstrap.log ---\n{tail}") from None

    def chroot(*cmd: str) -> None:
        _run(["chroot", str(root), *cmd], f"in the image: {' '.join(cmd)}",
             env=_clean_env(DEBIAN_FRONTEND="noninteractive"))

    etc = root / "etc"
    if suite == SUITE:
        (etc / "apt/sources.list").write_text(sources_list(mirror, security_mirror))
    else:  # Debian 13: deb822 only, so the roles meet the format a Debian 13 host has
        (etc / "apt/sources.list").unlink(missing_ok=True)
        (etc / "apt/sources.list.d/debian.sources").write_text(deb822_sources(mirror, security_mirror, suite))
    policy = root / "usr/sbin/policy-rc.d"  # package installs must not start daemons here
    policy.write_text("#!/bin/sh\n# dlrig test host: never start services\nexit 101\n")
    policy.chmod(0o755)
    (etc / "hosts").write_text(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        "ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
    )
    (etc / "hostname").write_text("dlrig-test\n")
    add_test_user(root, pubkey, chroot)
    chroot("ssh-keygen", "-A")
    chroot("apt-get", "clean")
    strip_apt_lists(root)
    with contextlib.suppress(FileNotFoundError):
        (etc / "machine-id").write_text("")  # "uninitialized", like Debian's cloud images
    _umount_all_under(root)


def add_test_user(root: Path, pubkey: str, chroot: Callable[..., None]) -> None:
    """The passwordless-sudo user ``dlrig`` who logs in with ``pubkey`` only (test hosts and VMs)."""
    etc = root / "etc"
    chroot("useradd", "--create-home", "--uid", str(UID), "--user-group",
           "--shell", "/bin/bash", USER)
    chroot("usermod", "--password", "*", USER)  # no password login; keys only
    sudoers = etc / "sudoers.d" / USER
    sudoers.write_text(f"{USER} ALL=(ALL:ALL) NOPASSWD: ALL\n")
    sudoers.chmod(0o440)
    chroot("visudo", "-c")
    ssh_dir = root / "home" / USER / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    (ssh_dir / "authorized_keys").write_text(pubkey)
    (ssh_dir / "authorized_keys").chmod(0o600)
    for p in (ssh_dir, ssh_dir / "authorized_keys"):
        os.chown(p, UID, UID)


def strip_apt_lists(root: Path) -> None:
    """No package lists in an image: they would go stale in the cache (hosts run apt-get update)."""
    lists = root / "var/lib/apt/lists"
    for p in lists.iterdir():
        if p.is_file() and p.name != "lock":
            p.unlink()
    for p in (root / "var/cache/apt").glob("*.bin"):
        p.unlink()


def _extracted_root(image: Path) -> Path:
    """One read-only extracted copy of ``image`` (the overlay lower dir), made on demand."""
    lower = _lower_dir(image)
    if lower.is_dir():
        return lower
    with _FileLock(_image_lock(image)):
        if lower.is_dir():
            return lower
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=image.parent))
        try:
            _extract(image, tmp)
            tmp.chmod(0o755)
            os.replace(tmp, lower)
        except BaseException:
            _safe_rmtree(tmp)
            raise
    return lower


def _extract(image: Path, dest: Path) -> None:
    _run(["tar", "--numeric-owner", "-I", "zstd", "-xpf", str(image), "-C", str(dest)],
         f"extracting {image}")


def _overlay_supported() -> bool:
    try:
        return "overlay" in Path("/proc/filesystems").read_text().split()
    except OSError:
        return False
