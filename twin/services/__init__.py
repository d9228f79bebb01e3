"""Reusable AI services of the paper (§2.4): pure logic, no I/O."""
