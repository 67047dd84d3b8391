"""The soak on the real daemon: ``harness.py`` (shared), ``test_soak.py``, ``__main__.py``."""
