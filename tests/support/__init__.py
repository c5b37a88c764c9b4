"""Helpers shared by the test folders (importable because tests/conftest.py puts tests/ on sys.path)."""
