"""Verification: the verify runner, its pytest plugin, hints, the torch probe, shipped checks, bench."""
