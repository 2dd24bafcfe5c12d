"""Vocabulary every layer shares: secrets, durations and sizes, YAML with its source positions,
metrics.

The bottom layer: imports nothing else of watcher.
"""
