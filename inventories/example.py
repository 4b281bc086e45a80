"""One rig over SSH: the reference build (Ryzen 7 3700X, RTX 2070 Super, NVMe + shared HDD).

    dlrig plan inventories/example.py          # what would change (dry run)
    dlrig apply inventories/example.py         # do it (asks first; --yes to skip)
    dlrig verify inventories/example.py        # prove it works

Every setting is listed below, commented, with its default: uncomment what you change.
`dlrig settings` explains each one.
"""

hosts = [
    (
        "rig",
        {
            "ssh_hostname": "192.0.2.10",  # your rig's address (this one is a documentation address)
            "ssh_user": "me",  # a sudo user on the rig whose key you hold
            "_sudo": True,
            # >>> every setting with its default (generated: dlrig settings --python --write FILE) >>>
            # --- dlrig ---
            # "cpu_only": False,  # True or False: no GPU stack: skip the NVIDIA roles and install a CPU build of torch
            # "dlrig_roles": None,  # a list of strings or None: roles to apply to this host, in dlrig's order (None: every role)
            # "workstation_user": None,  # a string or None: the rig's owner (conda, Jupyter and SSH keys are theirs); None: the login user
            # --- base ---
            # "apt_cache_time": 3600,  # an integer >= 0: skip `apt-get update` when lists are this fresh (s)
            # "apt_lock_timeout": 600,  # an integer from 0 to 7200: seconds apt waits for the dpkg lock (unattended-upgrades) before failing
            # "base_extra_packages": [],  # a list of strings: more apt packages you want
            # "base_packages": ['build-essential', 'ca-certificates', 'curl', 'git', 'gnupg', 'htop', 'pciutils', 'rsync', 'tmux', 'unzip', 'wget'],  # a list of strings: essential packages on every rig
            # "extra_ca_certificates": [],  # a list of strings: PEM files on this machine to trust on the host (TLS-inspecting proxies)
            # "ubuntu_enable_universe": True,  # True or False: enable Ubuntu's universe component
            # <<< every setting <<<
        },
    ),
]
