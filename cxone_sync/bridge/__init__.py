"""The bridge: NICE CXone's public export surfaces turned into the Data Download shape.

The platform consumes job manifests and Parquet files in the landing bucket (CONTRACT §1-§2).
NICE's public documentation describes other surfaces (the Data Extraction API, the Reporting
API); the bridge extracts an interval through one of them, converts the answer to Parquet with
explicit types, writes it under the contract's layout with its SHA-256, and publishes a job
manifest that :class:`~cxone_sync.bridge.source.BridgeSource` serves through the platform's
:class:`~cxone_sync.cxone.source.ExportSource` interface.
"""
