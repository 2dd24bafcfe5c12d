"""``python -m watcher.cli``: the same command line as ``watcher``."""

import sys

from watcher.cli.main import main

sys.exit(main())
