"""Automation: job sensors, failed-job recovery, gap detection, late-data reconciliation."""
