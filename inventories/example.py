"""One rig over SSH: the reference build (Ryzen 7 3700X, RTX 2070 Super, NVMe + shared HDD).

    dlrig plan inventories/example.py          # what would change (dry run)
    dlrig apply inventories/example.py         # do it (asks first; --yes to skip)
    dlrig verify inventories/example.py        # prove it works

Every setting is listed below, commented, with its default: uncomment what you change.
`dlrig settings` explains each one.
"""

hosts = [
    (
        "@dlrig-ssh/rig",  # dlrig's SSH connector (TCP_NODELAY): pyinfra calls this host "rig"
        {
            "ssh_hostname": "192.0.2.10",  # your rig's address (this one is a documentation address)
            "ssh_user": "me",  # a sudo user on the rig whose key you hold
            "_sudo": True,
            # >>> every setting with its default (generated: dlrig settings --python --write FILE) >>>
            # --- dlrig ---
            # "apply_lock_timeout": 600,  # an integer from 0 to 86400: seconds `dlrig apply` waits for another apply on the same host to finish (a host-side lock) before failing that host unchanged
            # "cache_dir": None,  # an absolute path or None: a folder on the host that outlives a reinstall (e.g. on the data disk): apt, pip, conda and Miniforge caches and the locked wheels; None: no cache
            # "cpu_only": False,  # True or False: no GPU stack: skip the NVIDIA roles and install a CPU build of torch
            # "dlrig_lock_file": None,  # an absolute path or None: the lock file whose versions the roles install (set by `dlrig apply --locked LOCK`)
            # "dlrig_roles": None,  # a list of strings or None: roles to apply to this host, in dlrig's order (None: every role)
            # "workstation_user": None,  # a string or None: the rig's owner (conda, Jupyter and SSH keys are theirs); None: the login user
            # --- base ---
            # "apt_cache_time": 3600,  # an integer >= 0: skip `apt-get update` when lists are this fresh (s)
            # "apt_lock_timeout": 600,  # an integer from 0 to 7200: seconds apt waits for the dpkg lock (unattended-upgrades) before failing
            # "base_extra_packages": [],  # a list of strings: more apt packages you want
            # "base_packages": ['build-essential', 'ca-certificates', 'curl', 'git', 'gnupg', 'htop', 'pciutils', 'rsync', 'tmux', 'unzip', 'wget'],  # a list of strings: essential packages on every rig
            # "extra_ca_certificates": [],  # a list of strings: PEM files on this machine to trust on the host (TLS-inspecting proxies)
            # "ubuntu_enable_universe": True,  # True or False: enable Ubuntu's universe component
            # --- nvidia_driver ---
            # "driver_blacklist_nouveau": True,  # True or False: blacklist the nouveau driver
            # "driver_branch": None,  # an integer or None: driver branch, e.g. 580 (None: the resolver's choice for the GPUs)
            # "driver_gpus": None,  # a list of strings or None: plan for these GPUs (PCI ids or names) instead of lspci's, e.g. ['10de:1e84']: prepare a host before the card is in
            # "driver_headless": False,  # True or False: ubuntu source: compute only, no X/OpenGL driver (servers)
            # "driver_hold": True,  # True or False: apt-mark hold the driver packages (no surprise upgrades: 'Driver/library version mismatch')
            # "driver_kernel_headers": True,  # True or False: DKMS sources: install the running kernel's headers
            # "driver_mok_key": None,  # an absolute path or None: DKMS signing key to enrol (None: /var/lib/dkms/mok.pub on Debian, /var/lib/shim-signed/mok/MOK.der on Ubuntu)
            # "driver_mok_password": None,  # a string or None: DKMS + Secure Boot: one-time password to enrol the DKMS signing key (you type it at the MOK Manager screen on the next boot); None refuses instead
            # "driver_persistence": True,  # True or False: enable nvidia-persistenced (persistence mode) at boot
            # "driver_recommends": True,  # True or False: install the driver packages' Recommends (Debian: dkms pulls linux-headers-amd64 and builds the module; nvidia-settings...)
            # "driver_server": False,  # True or False: ubuntu source: the -server (Enterprise Ready Driver) packages
            # "driver_source": None,  # one of None, 'ubuntu', 'nvidia', 'debian': where the driver comes from (None: ubuntu on Ubuntu, debian on Debian, NVIDIA's repo where those cannot serve the card)
            # "nvidia_repo_key_fingerprint": 'EB693B3035CD5710E231E123A4B469963BF863CC',  # a string or None: apt accepts the repository only when signed by the key with this fingerprint (signed-by=KEYRING,FINGERPRINT); None: any key in the downloaded keyring
            # "nvidia_repo_key_sha256": None,  # a string or None: expected sha256 of the key file (None: not checked)
            # "nvidia_repo_key_url": None,  # an http(s):// or file:// URL or None: the repository's signing key (None: <repo>/3bf863cc.pub, NVIDIA's key)
            # "nvidia_repo_url": 'https://developer.download.nvidia.com/compute/cuda/repos',  # an http(s):// or file:// URL: NVIDIA CUDA apt repository root (a mirror works); <url>/<distro>/<arch>/ is the repository
            # --- cuda ---
            # "cuda_profile": True,  # True or False: put nvcc on PATH and CUDA_HOME in /etc/profile.d/dlrig-cuda.sh
            # "cuda_source": None,  # one of None, 'nvidia', 'distro': toolkit from NVIDIA's repo ('nvidia') or the OS ('distro'); None: resolved
            # "cuda_version": None,  # a string or None: CUDA toolkit X.Y, e.g. '12.8' (None: torch's CUDA, as resolved)
            # --- cudnn ---
            # "cudnn_dev": True,  # True or False: also the headers/dev packages (building against cuDNN)
            # "cudnn_install": True,  # True or False: install cuDNN system-wide (torch wheels carry their own)
            # --- conda ---
            # "conda_channels": ['conda-forge'],  # a list of strings: channels in .condarc and environment.yml (a conda-forge mirror URL works too)
            # "conda_installer_sha256": '2e1ad2188fe69fcdd522c2b20c08c800a5c7411b775eca768318b1540ed32e53',  # a string: SHA-256 of conda_installer_url; the installer is refused unless it matches
            # "conda_installer_url": 'https://github.com/conda-forge/miniforge/releases/download/24.11.3-0/Miniforge3-24.11.3-0-Linux-x86_64.sh',  # an http(s):// or file:// URL: the Miniforge installer (.sh) to download
            # "conda_prefix": None,  # an absolute path or None: where Miniforge is installed; None: ~USER/miniforge3
            # --- pytorch ---
            # "env_name": 'dl',  # a string: the conda environment with torch, fastai and Jupyter
            # "extra_packages": [],  # a list of strings: more pip requirements for the environment, e.g. ['pandas>=2.2', 'timm']
            # "pip_find_links": [],  # a list of strings: extra wheel locations (wheelhouses, mirrors) pip looks in for every package
            # "pip_index_url": None,  # an http(s):// or file:// URL or None: index torch/torchvision come from; None: the resolver's (download.pytorch.org/whl/<variant>)
            # "python_version": '3.11',  # a string: Python of that environment
            # "torch_version": None,  # a string or None: torch release to install, e.g. '2.14.1'; None: the resolver's choice
            # "use_uv": True,  # True or False: install the environment's packages with `uv pip` (uv from PyPI into the env; many times faster than pip, same index, find-links and versions); False: pip
            # --- jupyter ---
            # "jupyter_ip": '127.0.0.1',  # an IP address: address JupyterLab listens on (127.0.0.1: over an SSH tunnel)
            # "jupyter_password_hash": None,  # a string or None: JupyterLab password hash (jupyter_server.auth.passwd()); or apply --jupyter-password-prompt
            # "jupyter_port": 8888,  # a TCP port: JupyterLab's port
            # "jupyter_root_dir": None,  # an absolute path or None: folder JupyterLab shows (e.g. a data disk); None: the user's home
            # --- ssh ---
            # "ssh_authorized_keys": [],  # a list of strings: public keys (lines of id_*.pub) installed for the rig's owner
            # "ssh_extra_config": [],  # a list of strings: extra sshd_config directives for the drop-in, one per item (validated by sshd -t)
            # "ssh_extra_ports": [],  # a list of integers: more ports for sshd (move ports: add the new one here first, then switch ssh_port)
            # "ssh_password_authentication": None,  # True or False or None: password login; None: off once the owner has an authorized key, else left as is
            # "ssh_permit_root_login": 'no',  # one of 'no', 'prohibit-password': sshd PermitRootLogin
            # "ssh_port": 22,  # a TCP port: the port pyinfra connects to; sshd always keeps listening on the port it was reached on
            # --- firewall ---
            # "firewall_allow": [],  # a list of strings: extra ufw rules, each what follows `ufw allow` (e.g. '6006/tcp')
            # "firewall_jupyter_from": None,  # a string or None: allow Jupyter only from this address/network (None: from anywhere)
            # "firewall_ssh_limit": True,  # True or False: rate-limit SSH (ufw limit: 6 new connections in 30 s per address) instead of allow
            # --- power ---
            # "power_never_sleep": True,  # True or False: mask sleep/suspend/hibernate; GDM and logind never suspend
            # "power_wol_interface": None,  # a string or None: enable wake-on-LAN (magic packet) on this interface, e.g. 'enp3s0'
            # --- dualboot ---
            # "data_disks": [],  # a list of dict: disks to mount at boot: [{'uuid', 'mount', 'fs' (default ntfs), 'options'}]
            # "dualboot_ntfs_driver": 'auto',  # one of 'auto', 'ntfs3', 'ntfs-3g': NTFS driver: 'auto' (ntfs3 from Linux 5.15, else and on Debian 12 ntfs-3g), 'ntfs3' or 'ntfs-3g'
            # "grub_default": 'linux',  # a string: boot entry by default: 'linux' (first), 'saved' (last booted), 'windows', or a menu title
            # "grub_timeout": 5,  # an integer from 0 to 600: seconds GRUB's menu waits
            # "rtc_local": False,  # True or False: keep the hardware clock in local time as Windows does (True on dual-boot rigs)
            # --- unattended_upgrades ---
            # "unattended_upgrades_blacklist": [],  # a list of strings: more package regexes unattended-upgrades must not upgrade
            # "unattended_upgrades_enabled": True,  # True or False: install and enable unattended-upgrades
            # "unattended_upgrades_reboot": False,  # True or False: reboot automatically when an update needs it (off: a training run is never cut)
            # <<< every setting <<<
        },
    ),
]
