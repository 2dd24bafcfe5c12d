"""Several ``watcher run`` processes on one PostgreSQL state form the site's cluster.

Modules:
  partition  which member runs which check: rendezvous hashing over the members
  node       this process as a member: joins, renews its lease, reaps the dead,
             recomputes its share, and fences the store's writes
  deadman    the dead man's switch the leader calls once per interval
  status     ``watcher cluster``: members, shares, lease ages, the database

The tables and the fence's statements are ``watcher.store.cluster``'s. A SQLite state
is one watcher: no cluster.
"""

from watcher.cluster.node import ClusterNode, default_node_name
from watcher.cluster.partition import owner

__all__ = ["ClusterNode", "default_node_name", "owner"]
