"""Shipped testinfra checks, one module per role (run by ``dlrig verify``)."""
