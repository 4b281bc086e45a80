"""``dlrig --help`` and every ``dlrig CMD --help`` print what they printed before the command modules
became lazy about their imports (issue 13). ``data/help_texts.json`` was captured from main at
2f9660b (``help_text.help_texts()``, 80 columns); a deliberate help change re-captures it:
``python3 -c "import sys; sys.path.insert(0, 'tests/unit'); import json, help_text;
json.dump(help_text.help_texts(), open('tests/unit/data/help_texts.json', 'w'), indent=1, sort_keys=True)"``."""

from __future__ import annotations

import json
from pathlib import Path

from tests.unit.help_text import help_texts

RECORDED = json.loads((Path(__file__).parent / "data" / "help_texts.json").read_text())


def test_every_help_text_is_unchanged():
    now = help_texts()
    assert sorted(now) == sorted(RECORDED), "a command was added or removed: re-capture data/help_texts.json"
    changed = [k for k in RECORDED if now[k] != RECORDED[k]]
    assert changed == [], "\n\n".join(f"{k}:\n{now[k]}" for k in changed)
