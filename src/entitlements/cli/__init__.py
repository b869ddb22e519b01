"""The staff command line: ``entitlements --help``."""
