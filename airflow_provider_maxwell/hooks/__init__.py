"""Hooks: MaxwellHook, the only module with network I/O."""
