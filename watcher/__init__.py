"""watcher: probes a site, turns failures into prioritised incidents, tickets and pages them."""

__version__ = "0.1.0"
