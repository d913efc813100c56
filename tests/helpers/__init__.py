"""Helpers the tests share beyond conftest's fixtures (kept out of the test modules, which do not import each
other for code)."""
