"""The Jupyter password hash: made on the controller, checked as a setting, never kept in clear.

The format is jupyter_server's own (``argon2:...`` as ``jupyter_server.auth.passwd()`` writes it,
or the salted ``sha512:salt:hex`` form its ``passwd_check`` also accepts), so the rig needs no
clear text and the controller needs no jupyter_server.
"""

from __future__ import annotations

import hashlib
import re
import secrets

_HASH_RE = re.compile(r"^(argon2:\$argon2(id|i|d)\$.+|(sha1|sha256|sha512):[0-9a-f]+:[0-9a-f]{40,})$")


def check_password_hash(value: str) -> str | None:
    """Setting check: a jupyter_server password hash, never a clear-text password."""
    if _HASH_RE.match(value):
        return None
    return ("not a Jupyter password hash (argon2:$argon2id$... or sha1:salt:hex); "
            "make one with `python -c 'from jupyter_server.auth import passwd; print(passwd())'` "
            "or use `dlrig apply --jupyter-password-prompt`; never put a clear-text password here")


def hash_password(password: str) -> str:
    """The hash jupyter_server.auth.passwd() makes (argon2id, same parameters).

    Without argon2-cffi on the controller, the salted ``sha512:salt:hex`` form that
    jupyter_server's ``passwd_check`` also accepts.
    """
    if not password:
        raise ValueError("empty password")
    try:
        import argon2
    except ImportError:
        salt = secrets.token_hex(6)
        h = hashlib.sha512(password.encode("utf-8") + salt.encode("ascii"))
        return f"sha512:{salt}:{h.hexdigest()}"
    ph = argon2.PasswordHasher(memory_cost=10240, time_cost=10, parallelism=8)
    return "argon2:" + ph.hash(password)


def verify_password(hashed: str, password: str) -> bool:
    """jupyter_server's passwd_check, for tests and the controller (no jupyter_server needed)."""
    if hashed.startswith("argon2:"):
        import argon2
        import argon2.exceptions

        try:
            return argon2.PasswordHasher().verify(hashed[len("argon2:"):], password)
        except argon2.exceptions.VerificationError:
            return False
    algorithm, salt, digest = hashed.split(":", 2)
    h = hashlib.new(algorithm)
    h.update(password.encode("utf-8") + salt.encode("ascii"))
    return secrets.compare_digest(h.hexdigest(), digest)
