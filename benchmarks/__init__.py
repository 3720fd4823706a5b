"""Benchmarks: figures about chainwatch measured on a local Anvil chain (not tests; nothing here asserts speed)."""
