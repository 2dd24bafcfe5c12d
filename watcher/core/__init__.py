"""Vocabulary every layer shares: secrets, durations and sizes, the shared config field types,
YAML with its source positions.

The bottom layer: imports nothing else of watcher.
"""
