"""The ``watcher`` command line and its subcommands. The top layer: may import anything."""
