"""The engine around pyinfra: inventory, settings, preflight, runner, facts, the role catalogue."""
