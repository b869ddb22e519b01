"""Tools for integrators' test suites: hypothesis strategies, the store contract suite,
fakes and a pytest plugin. Importing this package imports nothing heavy; each submodule
pulls in its own test dependencies (hypothesis, pytest)."""
