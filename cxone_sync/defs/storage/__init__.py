"""The export bucket as a Dagster source asset, with the storage preflight as asset checks."""
