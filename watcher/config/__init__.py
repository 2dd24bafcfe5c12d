"""watcher.yml and rule packs, loaded into typed models and checked as a whole.

May import ``watcher.engine``, ``watcher.schedule`` and ``watcher.core`` (for the models those
layers define), and the ``probes``, ``rules`` and ``integrations`` registries.
"""
