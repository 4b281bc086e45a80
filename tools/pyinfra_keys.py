"""Record the data keys pyinfra itself understands (global arguments, connector data) for the
installed pyinfra, so ``dlrig check`` can tell them from typos without importing pyinfra.

    python3 tools/pyinfra_keys.py      # rewrites dlrig/engine/pyinfra_keys.json

tests/unit/test_settings.py fails when the file no longer matches the installed pyinfra.
"""

from __future__ import annotations

import json
from importlib.metadata import version

from dlrig.engine.settings import PYINFRA_KEYS_FILE, pyinfra_keys


def main() -> None:
    record = {
        "pyinfra": version("pyinfra"),
        "generated_by": "tools/pyinfra_keys.py (pyinfra.api.arguments + every pyinfra.connectors data_meta)",
        "keys": sorted(pyinfra_keys()),
    }
    PYINFRA_KEYS_FILE.write_text(json.dumps(record, indent=1) + "\n")
    print(f"{PYINFRA_KEYS_FILE}: {len(record['keys'])} keys of pyinfra {record['pyinfra']}")


if __name__ == "__main__":
    main()
