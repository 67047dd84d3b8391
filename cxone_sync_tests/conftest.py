pytest_plugins = ["cxone_sync_tests.fixtures"]
