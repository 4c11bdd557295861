"""The controller: leader-elected background work. First, the storage health monitor (SPEC §6)."""
