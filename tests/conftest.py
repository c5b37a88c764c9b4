"""Shared test setup. Being the top conftest.py, this file puts tests/ on sys.path (pytest's default import
mode), so every test folder imports the helpers in tests/support/."""
