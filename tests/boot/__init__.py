"""Boot tier (test_boot.py): each variant's real processes against real servers.

The booted stack, its servers and processes are in tests/support/ (the fault tier boots
the same stack).
"""
