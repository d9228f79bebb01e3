"""Shared values of the sweep, compare and report tests (a module of its own: every test folder has a
``conftest``, so ``from conftest import …`` would pick whichever was imported first)."""

TINY = {"devices.count": "4", "devices.test_households": "10"}
"""A home-health world small enough that a round takes well under a second."""
