"""The cached disk images of dlrig's test VMs: Debian 12 with its kernel, systemd, sshd and a real
bootloader, on a partitioned disk that also holds a Windows look-alike (dual-boot), built only from
Debian packages and cached as ``vm-<firmware>-<recipe hash>.qcow2`` (rebuilt when the recipe changes).

Two firmwares, one layout (partition 3 is always Linux' root):

- ``bios``: an MBR disk; p1 NTFS "Windows system" (``bootmgr`` + ``Boot/BCD``), p2 NTFS data, p3 ext4
  root; grub-pc's ``boot.img`` in the MBR and a ``core.img`` (made by the image's own grub-mkimage)
  in the gap before p1.
- ``uefi``: a GPT disk; p1 the ESP (Debian's signed shim as ``EFI/BOOT/BOOTX64.EFI``, signed GRUB and
  MokManager beside it, and ``EFI/Microsoft/Boot/bootmgfw.efi``), p2 NTFS data, p3 ext4 root. Boots
  under OVMF with Secure Boot ON (Microsoft keys enrolled).

No loop devices (this machine makes no partition nodes): each filesystem is made in its own file
(``mkfs.ext4 -d``, ``mkfs.vfat`` + mtools, ``mkntfs`` + ``ntfs-3g``) and copied into the disk at its
partition's offset. The first ``grub.cfg`` is written here (grub-probe cannot map a chroot's root);
``update-grub`` in the booted VM writes the real one.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import os
import tempfile
import time
from pathlib import Path

from dlrig.testing.image import (
    COMPONENTS, USER, add_test_user, check_suite, deb822_sources, default_cache_dir, default_mirror,
    default_security_mirror, sources_list, strip_apt_lists,
)
from dlrig.testing.system import (
    HostError, _clean_env, _FileLock, _require_root, _require_tools, _run, _safe_rmtree,
    _umount_all_under,
)

log = logging.getLogger(__name__)

#: Bump to force a rebuild of every cached VM image.
RECIPE_VERSION = 1
SUITE = "bookworm"  # the default; vm_image(suite="trixie") gives Debian 13 (dlrig.testing.image.SUITES)
FIRMWARES = ("bios", "uefi")
#: Installed into every VM (a booted Debian: kernel, systemd as PID 1, udev, dbus, sshd).
PACKAGES: tuple[str, ...] = (
    "linux-image-amd64", "systemd-sysv", "udev", "dbus", "kmod", "initramfs-tools",
    "openssh-server", "sudo", "python3", "ca-certificates", "iproute2", "procps", "zstd",
    # what the config roles install (firewall, dualboot, unattended_upgrades): dpkg (and the
    # initramfs rebuild ntfs-3g triggers) under TCG took 6 min of their 16-min apply; installed
    # here, natively, the VM tests spend their minutes on what only a booted machine shows (the
    # installs themselves are proven on the host tier)
    "ufw", "os-prober", "ntfs-3g", "unattended-upgrades",
)
#: The bootloader of each firmware (Debian's signed shim and GRUB for Secure Boot).
FIRMWARE_PACKAGES: dict[str, tuple[str, ...]] = {
    "bios": ("grub-pc",),
    "uefi": ("grub-efi-amd64", "grub-efi-amd64-signed", "shim-signed", "mokutil"),
}
MIB = 1024 * 1024
#: (label, size in MiB) of p1 and p2; p3 (root) takes the rest of DISK_MIB.
SYSTEM_MIB, DATA_MIB, DISK_MIB = 64, 32, 12 * 1024
FIRST_MIB = 1  # p1 starts here; BIOS: core.img lives in the gap before it
DATA_SERIAL = "D1A6DA7ADA7A0002"  # the data partition's NTFS serial (its blkid UUID)
DATA_LABEL = "DLRIGDATA"
#: The kernel command line: serial console (serial_log) and stable interface names.
CMDLINE = "console=ttyS0,115200 net.ifnames=0"

HOST_TOOLS = ("debootstrap", "chroot", "ssh-keygen", "qemu-img", "qemu-system-x86_64", "sfdisk",
              "mkfs.ext4", "mkntfs", "ntfs-3g", "mkfs.vfat", "mcopy", "mmd")


def recipe_hash(firmware: str, mirror: str | None = None, security_mirror: str | None = None,
                suite: str = SUITE) -> str:
    """Hash of everything that shapes a VM image: this module's recipe code, packages, suite, mirrors."""
    h = hashlib.sha256()
    for part in (
        f"v{RECIPE_VERSION}", firmware, check_suite(suite), COMPONENTS, ",".join(PACKAGES),
        ",".join(FIRMWARE_PACKAGES[firmware]), f"{SYSTEM_MIB},{DATA_MIB},{DISK_MIB}", CMDLINE,
        mirror or default_mirror(), security_mirror or default_security_mirror(),
        inspect.getsource(_build_root), inspect.getsource(_make_disk), inspect.getsource(_windows),
        inspect.getsource(add_test_user), inspect.getsource(strip_apt_lists),
        inspect.getsource(sources_list), inspect.getsource(deb822_sources),
    ):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def vm_image_key(image: Path) -> Path:
    """The private SSH key that logs in as ``dlrig`` on VMs booted from ``image``."""
    return image.with_suffix(".key")


def vm_image(firmware: str = "bios", cache_dir: Path | None = None, suite: str = SUITE) -> Path:
    """The cached qcow2 base image of ``firmware`` ('bios' or 'uefi') with Debian ``suite``
    (bookworm, or trixie), built if missing (locked)."""
    if firmware not in FIRMWARES:
        raise HostError(f"firmware {firmware!r}: use one of {', '.join(FIRMWARES)}")
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    mirror, security = default_mirror(), default_security_mirror()
    image = cache_dir / f"vm-{firmware}-{suite}-{recipe_hash(firmware, mirror, security, suite)}.qcow2"
    if image.exists() and vm_image_key(image).exists():
        return image
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _FileLock(image.with_name(f".{image.stem}.lock")):
        if image.exists() and vm_image_key(image).exists():
            return image
        t0 = time.monotonic()
        log.info("building VM image %s", image)
        _build(image, firmware, mirror, security, suite)
        log.info("built %s in %.1f s", image, time.monotonic() - t0)
    return image


def _build(image: Path, firmware: str, mirror: str, security: str, suite: str) -> None:
    _require_root()
    _require_tools(*HOST_TOOLS)
    tmp = Path(tempfile.mkdtemp(prefix=".vmbuild-", dir=image.parent))
    try:
        key = tmp / "key"
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{USER}@dlrig-test-vms",
              "-f", str(key)], "ssh-keygen")
        root = tmp / "root"
        _build_root(root, firmware, mirror, security, key.with_suffix(".pub").read_text(), suite)
        raw = tmp / "disk.raw"
        _make_disk(raw, root, firmware, tmp)
        _safe_rmtree(root)
        qcow = tmp / image.name
        _run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(qcow)], "qemu-img convert")
        key.chmod(0o600)
        os.replace(key, vm_image_key(image))
        os.replace(qcow, image)  # last: its presence means "complete"
    finally:
        with contextlib.suppress(HostError):
            _umount_all_under(tmp)
        _safe_rmtree(tmp)


def _chroot_mounts(root: Path) -> None:
    for src, dst, opts in (("proc", "proc", ["-t", "proc"]), ("/dev", "dev", ["--bind"]),
                           ("sysfs", "sys", ["-t", "sysfs"])):
        _run(["mount", *opts, src, str(root / dst)], f"mount {dst} in the VM root")


def _build_root(root: Path, firmware: str, mirror: str, security: str, pubkey: str,
                suite: str = SUITE) -> None:
    """debootstrap + kernel, systemd, sshd and the firmware's bootloader packages into ``root``."""
    root.mkdir(parents=True)
    env = _clean_env(DEBIAN_FRONTEND="noninteractive")
    _run(["debootstrap", "--variant=minbase", "--include=ca-certificates", suite, str(root), mirror],
         "debootstrap", env=_clean_env())

    def chroot(*cmd: str) -> None:
        _run(["chroot", str(root), *cmd], f"in the VM root: {' '.join(cmd)}", env=env)

    etc = root / "etc"
    if suite == SUITE:
        (etc / "apt/sources.list").write_text(sources_list(mirror, security))
    else:  # Debian 13: deb822 only, as on the host tier's trixie hosts (dlrig.testing.image)
        (etc / "apt/sources.list").unlink(missing_ok=True)
        (etc / "apt/sources.list.d/debian.sources").write_text(deb822_sources(mirror, security, suite))
    policy = root / "usr/sbin/policy-rc.d"  # no daemons start in the chroot
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    # a small initramfs (TCG unpacks and probes every module of MODULES=most slowly): the drivers
    # for a virtio disk and ext4, zstd; udev loads the rest from the root filesystem
    (etc / "initramfs-tools/conf.d").mkdir(parents=True, exist_ok=True)
    (etc / "initramfs-tools/conf.d/dlrig-vm.conf").write_text("MODULES=list\nCOMPRESS=zstd\n")
    (root / "usr/share/initramfs-tools/modules.d").mkdir(parents=True, exist_ok=True)
    (root / "usr/share/initramfs-tools/modules.d/dlrig-vm").write_text(
        "virtio_pci\nvirtio_blk\next4\ncrc32c_generic\n")
    _chroot_mounts(root)
    try:
        chroot("apt-get", "update", "-qq")
        # the kernel before GRUB; no grub.cfg yet, so no package hook runs update-grub here
        chroot("apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES)
        chroot("apt-get", "install", "-y", "-qq", "--no-install-recommends",
               *FIRMWARE_PACKAGES[firmware])
        chroot("apt-get", "clean")
    finally:
        _umount_all_under(root)
    policy.unlink()
    (etc / "hostname").write_text("dlrig-vm\n")
    (etc / "hosts").write_text("127.0.0.1\tlocalhost\n127.0.1.1\tdlrig-vm\n::1\tlocalhost ip6-localhost\n")
    (etc / "systemd/network/20-wired.network").write_text(
        "[Match]\nName=eth*\n\n[Network]\nDHCP=ipv4\n")
    (etc / "resolv.conf").unlink(missing_ok=True)
    (etc / "resolv.conf").write_text("nameserver 10.0.2.3\n")  # qemu user-mode's DNS proxy
    wants = etc / "systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        (wants / "systemd-networkd.service").symlink_to("/lib/systemd/system/systemd-networkd.service")
    # the image's console is the serial port; GRUB's menu too (update-grub in the VM keeps this)
    (etc / "default/grub.d").mkdir(parents=True, exist_ok=True)
    (etc / "default/grub.d/50-dlrig-vm.cfg").write_text(
        f'GRUB_CMDLINE_LINUX="{CMDLINE}"\nGRUB_TERMINAL="serial console"\n'
        'GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"\nGRUB_TIMEOUT=1\n')
    add_test_user(root, pubkey, chroot)
    chroot("ssh-keygen", "-A")
    strip_apt_lists(root)
    (etc / "machine-id").write_text("")  # a new one at first boot


def _partitions(firmware: str) -> list[tuple[int, int, str]]:
    """(start MiB, size MiB, sfdisk type) of p1..p3."""
    sys_type, ntfs, linux = (("U", "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", "L") if firmware == "uefi"
                             else ("7", "7", "83"))
    data_start = FIRST_MIB + SYSTEM_MIB
    root_start = data_start + DATA_MIB
    return [(FIRST_MIB, SYSTEM_MIB, sys_type), (data_start, DATA_MIB, ntfs),
            (root_start, DISK_MIB - root_start - 1, linux)]


def _uuid_of(fs_image: Path) -> str:
    res = _run(["blkid", "-o", "value", "-s", "UUID", str(fs_image)], f"blkid {fs_image}")
    return res.stdout.strip()


def _make_disk(raw: Path, root: Path, firmware: str, tmp: Path) -> None:
    """Partition ``raw``, make each filesystem in its own file and copy it to its offset."""
    parts = _partitions(firmware)
    with open(raw, "wb") as f:
        f.truncate(DISK_MIB * MIB)
    label = "gpt" if firmware == "uefi" else "dos"
    table = f"label: {label}\n" + "".join(f"start={s * 2048}, size={n * 2048}, type={t}\n"
                                          for s, n, t in parts)
    _run(["sfdisk", "-q", str(raw)], "sfdisk", input=table)
    fs = [tmp / f"p{i}.img" for i in (1, 2, 3)]
    for img, (_, size, _) in zip(fs, parts):
        with open(img, "wb") as f:
            f.truncate(size * MIB)
    _windows(fs[0], fs[1], firmware, tmp)
    esp_uuid = _uuid_of(fs[0]) if firmware == "uefi" else None
    # the root filesystem: UUID fixed first, so fstab and grub.cfg can name it
    import uuid as _uuidmod
    root_uuid = str(_uuidmod.uuid4())
    fstab = f"UUID={root_uuid} / ext4 errors=remount-ro 0 1\n"
    if esp_uuid:
        fstab += f"UUID={esp_uuid} /boot/efi vfat umask=0077 0 1\n"
        (root / "boot/efi").mkdir(parents=True, exist_ok=True)
    (root / "etc/fstab").write_text(fstab)
    grub_cfg = (
        "serial --unit=0 --speed=115200\nterminal_input serial console\nterminal_output serial console\n"
        "set timeout=1\ninsmod part_msdos\ninsmod part_gpt\ninsmod ext2\n"
        f"search --no-floppy --fs-uuid --set=root {root_uuid}\n"
        "menuentry 'Debian GNU/Linux' {\n"
        f"  linux /vmlinuz root=UUID={root_uuid} ro {CMDLINE}\n  initrd /initrd.img\n}}\n")
    (root / "boot/grub").mkdir(parents=True, exist_ok=True)
    (root / "boot/grub/grub.cfg").write_text(grub_cfg)
    if firmware == "bios":
        # what grub-install does on a disk: the modules under /boot/grub, core.img after the MBR
        mods = root / "boot/grub/i386-pc"
        _run(["cp", "-a", str(root / "usr/lib/grub/i386-pc"), str(mods)], "copying GRUB modules")
        _run(["chroot", str(root), "grub-mkimage", "-O", "i386-pc", "-o", "/boot/grub/core.img",
              "-p", "(hd0,msdos3)/boot/grub", "biosdisk", "part_msdos", "ext2"], "grub-mkimage")
        core = (root / "boot/grub/core.img").read_bytes()
        if len(core) > (FIRST_MIB * MIB - 512):
            raise HostError(f"core.img is {len(core)} bytes: it does not fit before p1")
        boot = (root / "usr/lib/grub/i386-pc/boot.img").read_bytes()
        with open(raw, "r+b") as f:
            f.write(boot[:440])  # keep the partition table (bytes 440..511)
            f.seek(512)
            f.write(core)
    else:
        stub = (f"search --no-floppy --fs-uuid --set=root {root_uuid}\n"
                "set prefix=($root)/boot/grub\nconfigfile $prefix/grub.cfg\n")
        (tmp / "grub.cfg").write_text(stub)
        shim, grub = root / "usr/lib/shim", root / "usr/lib/grub/x86_64-efi-signed"
        esp = str(fs[0])
        for d in ("::/EFI/BOOT", "::/EFI/debian"):
            _run(["mmd", "-i", esp, d], f"mmd {d}")
            for src, name in ((shim / "shimx64.efi.signed", "shimx64.efi"),
                              (grub / "grubx64.efi.signed", "grubx64.efi"),
                              (shim / "mmx64.efi.signed", "mmx64.efi"), (tmp / "grub.cfg", "grub.cfg")):
                _run(["mcopy", "-i", esp, str(src), f"{d}/{name}"], f"mcopy {name}")
        _run(["mcopy", "-i", esp, str(shim / "shimx64.efi.signed"), "::/EFI/BOOT/BOOTX64.EFI"],
             "mcopy BOOTX64.EFI")
    _run(["mkfs.ext4", "-q", "-F", "-U", root_uuid, "-L", "dlrig-root", "-d", str(root), str(fs[2])],
         "mkfs.ext4 -d")
    for img, (start, _, _) in zip(fs, parts):
        _run(["dd", f"if={img}", f"of={raw}", "bs=1M", f"seek={start}", "conv=notrunc,sparse",
              "status=none"], f"dd {img.name}")
        img.unlink()


def _windows(system: Path, data: Path, firmware: str, tmp: Path) -> None:
    """A Windows look-alike as os-prober recognises it, and an NTFS data partition.

    BIOS: an NTFS system partition holding ``bootmgr`` and ``Boot/BCD`` (the BCD names "Windows 10"
    in UTF-16, as os-prober's 20microsoft reads it). UEFI: a FAT ESP holding
    ``EFI/Microsoft/Boot/bootmgfw.efi`` and ``BCD`` beside it (Debian 12's os-prober 1.81,
    ``mounted/efi/20microsoft``, lists it only with both). Neither boots: they are what the
    probers look at.
    """
    bcd = "Windows 10".encode("utf-16-le")
    mnt = tmp / "mnt"
    mnt.mkdir(exist_ok=True)
    if firmware == "bios":
        _run(["mkntfs", "-q", "-F", "-f", "-L", "System Reserved", str(system)], "mkntfs system")
        _run(["ntfs-3g", str(system), str(mnt)], "ntfs-3g mount")
        try:
            (mnt / "bootmgr").write_bytes(b"BOOTMGR stand-in (dlrig test VM)\n")
            (mnt / "Boot").mkdir()
            (mnt / "Boot/BCD").write_bytes(b"regf" + b"\0" * 60 + bcd)
        finally:
            _run(["umount", str(mnt)], "umount ntfs")
    else:
        _run(["mkfs.vfat", "-n", "EFI", str(system)], "mkfs.vfat")
        for d in ("::/EFI", "::/EFI/Microsoft", "::/EFI/Microsoft/Boot"):
            _run(["mmd", "-i", str(system), d], f"mmd {d}")
        stand_in = tmp / "bootmgfw.efi"
        stand_in.write_bytes(b"MZ" + b"\0" * 62 + b"bootmgfw stand-in (dlrig test VM)\n")
        _run(["mcopy", "-i", str(system), str(stand_in), "::/EFI/Microsoft/Boot/bootmgfw.efi"],
             "mcopy bootmgfw.efi")
        bcd_file = tmp / "BCD"
        bcd_file.write_bytes(b"regf" + b"\0" * 60 + bcd)
        _run(["mcopy", "-i", str(system), str(bcd_file), "::/EFI/Microsoft/Boot/BCD"], "mcopy BCD")
    _run(["mkntfs", "-q", "-F", "-f", "-L", DATA_LABEL, str(data)], "mkntfs data")
    # mkntfs seeds its volume serial from the clock: two partitions made in the same second get the
    # same serial, i.e. the same UUID in /dev/disk/by-uuid (seen: both 36AD34EC4A507A78), and the
    # data disk's fstab line then mounts the Windows system partition. Give the data partition its own.
    _run(["ntfslabel", "--new-serial=" + DATA_SERIAL, str(data)], "ntfslabel --new-serial data")
    _run(["ntfs-3g", str(data), str(mnt)], "ntfs-3g mount")
    try:
        (mnt / "README.txt").write_text("dlrig test VM data partition\n")
    finally:
        _run(["umount", str(mnt)], "umount ntfs")
