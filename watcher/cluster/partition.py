"""Which member runs which check: rendezvous (highest random weight) hashing.

Every member computes the same owner from the same sorted member list, without talking
to the others; a member that joins or leaves moves only the checks it wins or held
(about 1/N of them), not a reshuffle of everything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = ["owner", "weight"]


def weight(node: str, key: str) -> int:
    digest = hashlib.blake2b(f"{node}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(key: str, nodes: Sequence[str]) -> str | None:
    """The member that runs ``key`` (a target's name), or None if there is none."""
    if not nodes:
        return None
    return max(nodes, key=lambda n: (weight(n, key), n))
