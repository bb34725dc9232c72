"""The bottom layer: the contract's names, ids, times, pacing and retries.

Imports nothing from the rest of the package, so every layer may import it.
"""
