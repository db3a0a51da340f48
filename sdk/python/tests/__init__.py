"""End-to-end and transport tests of the cellbox Python SDK (a package so its
conftest does not shadow other suites' top-level `conftest` module)."""
