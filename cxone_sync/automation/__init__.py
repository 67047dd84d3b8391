"""Automation logic without Dagster: sensor cursors and the recovery decisions made from them."""
