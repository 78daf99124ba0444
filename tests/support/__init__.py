"""What tests share that is not a fixture: fixtures stay in ``conftest.py`` files, and test
modules import helpers from here only (never from a ``conftest.py`` or another test module)."""
