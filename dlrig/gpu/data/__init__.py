"""Fact tables shipped with dlrig (GPU table, compatibility tables)."""
