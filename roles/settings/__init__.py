"""Every role's settings, one module per role, importable without pyinfra (``dlrig check`` needs
only these); the settings every role shares are declared here.

A role's module here declares its keys (:func:`dlrig.engine.settings.declare`), holds the check
functions they use and, where the role has one, its controller-side ``preflight(host, data)``.
"""

from __future__ import annotations

from dlrig.engine.catalogue import ORDER
from dlrig.engine.settings import Setting, declare

COMMON_DEFAULTS = declare(
    "dlrig",
    Setting(
        "dlrig_roles",
        None,
        "list",
        "roles to apply to this host, in dlrig's order (None: every role)",
        item_kind="str",
        nullable=True,
        check=lambda v: None
        if set(v) <= set(ORDER)
        else f"unknown role(s) {sorted(set(v) - set(ORDER))}; known: {', '.join(ORDER)}",
    ),
    Setting(
        "cpu_only",
        False,
        "bool",
        "no GPU stack: skip the NVIDIA roles and install a CPU build of torch",
    ),
    Setting(
        "cache_dir",
        None,
        "path",
        "a folder on the host that outlives a reinstall (e.g. on the data disk): apt, pip, conda and "
        "Miniforge caches and the locked wheels; None: no cache",
        nullable=True,
        shape="spaced_path",
    ),
    Setting(
        "dlrig_lock_file",
        None,
        "path",
        "the lock file whose versions the roles install (set by `dlrig apply --locked LOCK`)",
        nullable=True,
    ),
    Setting(
        "workstation_user",
        None,
        "str",
        "the rig's owner (conda, Jupyter and SSH keys are theirs); None: the login user",
        nullable=True,
        shape="user",
    ),
    Setting(
        "apply_lock_timeout",
        600,
        "int",
        "seconds `dlrig apply` waits for another apply on the same host to finish "
        "(a host-side lock) before failing that host unchanged",
        min=0,
        max=86400,
    ),
)
