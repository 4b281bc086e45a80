"""The Vagrantfile's Ubuntu VMs (`vagrant up`), reached with pyinfra's @vagrant connector.

    vagrant up jammy noble
    dlrig plan inventories/vagrant.py
    dlrig apply inventories/vagrant.py --yes

The VMs have no GPU unless you pass one through (see the Vagrantfile): they run the CPU-only
profile by default.
"""

hosts = [
    ("@vagrant/jammy", {"_sudo": True, "cpu_only": True}),
    ("@vagrant/noble", {"_sudo": True, "cpu_only": True}),
]
