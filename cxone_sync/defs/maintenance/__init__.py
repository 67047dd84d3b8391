"""Housekeeping of the platform's own files: the staging clean-up."""
