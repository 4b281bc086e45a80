"""Data for every host of every inventory in this folder (pyinfra group_data): put fleet-wide
settings here, e.g. a lab mirror or a proxy CA. Host data overrides these values."""

# nvidia_repo_url = "http://mirror.lab.example/nvidia/cuda/repos"
# extra_ca_certificates = ["/usr/local/share/ca-certificates/corp-proxy.crt"]
