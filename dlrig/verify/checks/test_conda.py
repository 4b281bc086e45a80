"""Checks of role ``conda``: Miniforge at conda_prefix, the one the settings ask for, conda-forge only,
in the user's bash. Each failure says what to do."""

from __future__ import annotations

from dlrig.engine import pyenv
from dlrig.verify.hints import HINT_MARK, HINT_SEP

APPLY = "run `dlrig apply INVENTORY --roles conda`"


def _msg(reason: str, hint: str) -> str:
    return f"{reason}{HINT_SEP}{HINT_MARK}{hint}"


def _prefix(settings, owner, owner_home) -> tuple[str, str]:
    return pyenv.conda_prefix(settings, owner, owner_home), owner


def test_conda_installed(host, settings, owner, owner_home):
    prefix, _ = _prefix(settings, owner, owner_home)
    res = host.run(f"{prefix}/bin/conda --version")
    assert res.rc == 0 and res.stdout.startswith("conda "), _msg(
        f"no working conda at {prefix}/bin/conda ({(res.stderr or res.stdout).strip()[:200]})", APPLY)


def test_conda_is_the_installer_the_settings_name(host, settings, owner, owner_home):
    prefix, _ = _prefix(settings, owner, owner_home)
    marker = host.file(f"{prefix}/conda-meta/dlrig-installer")
    assert marker.exists, _msg(f"{prefix} was not installed by dlrig (no conda-meta/dlrig-installer)",
                               f"remove {prefix} and {APPLY}, or ignore if you manage conda yourself")
    want = settings.get("conda_installer_sha256")
    assert f"sha256={want}" in marker.content_string, _msg(
        f"{prefix} came from another installer than conda_installer_url ({marker.content_string.strip()})",
        f"remove {prefix} and {APPLY} to move to the configured Miniforge, or set conda_installer_url/sha256 "
        "to the installed one")


def test_condarc_is_conda_forge_only(host, settings, owner, owner_home):
    prefix, _ = _prefix(settings, owner, owner_home)
    rc = host.file(f"{prefix}/.condarc")
    assert rc.exists, _msg(f"{prefix}/.condarc is missing", APPLY)
    text = rc.content_string
    channels = text.split("channels:", 1)[1].split("\n\n")[0] if "channels:" in text else ""
    assert "defaults" not in channels and "channel_priority: strict" in text, _msg(
        f"{prefix}/.condarc lists the defaults channel or lacks strict priority", APPLY)
    for c in settings.get("conda_channels") or ["conda-forge"]:
        assert f"- {c}" in text, _msg(f"{prefix}/.condarc lacks channel {c}", APPLY)


def test_users_bash_knows_conda(host, settings, owner, owner_home):
    prefix, user = _prefix(settings, owner, owner_home)
    bashrc = host.file(f"{owner_home}/.bashrc")
    assert bashrc.exists and f"{prefix}/etc/profile.d/conda.sh" in bashrc.content_string, _msg(
        f"{user}'s ~/.bashrc does not load {prefix}/etc/profile.d/conda.sh", APPLY)
