"""The cluster's membership, shares, fence and delivery claims, on a real PostgreSQL:
several members in one process, each with a store of its own, as ``watcher run``
processes would have."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from tests.servers.postgres import PostgresServer
from watcher.cluster import ClusterNode
from watcher.cluster.partition import owner
from watcher.store import StateLocked, Store
from watcher.store.cluster import Fenced

TARGETS = [f"web-{n:03d}" for n in range(300)]


class Members:
    """Cluster members on one database; each stops and closes at the end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.nodes: list[ClusterNode] = []

    def add(self, name: str, lease: float, *, run: bool = False) -> ClusterNode:
        store = Store(self.url)
        node = ClusterNode(store, name, lease)
        store.fence, store.claim, store.holds = node.fence, node.claim, node.holds
        if run:
            node.start()
        else:
            node._join()  # renewals are driven by the test: a member that "pauses"
        self.nodes.append(node)
        return node

    def close(self) -> None:
        for node in self.nodes:
            node._stop.set()
            if node._thread.is_alive():
                node._thread.join(5)
            node.store.close()


@pytest.fixture
def members(postgres: PostgresServer) -> Iterator[Members]:
    group = Members(postgres.new_url())
    yield group
    group.close()


def _write(node: ClusterNode) -> None:
    with node.store.transaction() as tx:
        tx.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE"
            " SET value=excluded.value",
            (f"probe-{node.name}", "1"),
        )


def test_rendezvous_gives_each_member_a_fair_share_and_a_join_moves_only_its_own() -> None:
    three = ["a", "b", "c"]
    before = {t: owner(t, three) for t in TARGETS}
    shares = Counter(before.values())
    assert all(60 <= shares[n] <= 140 for n in three), shares
    after = {t: owner(t, [*three, "d"]) for t in TARGETS}
    moved = [t for t in TARGETS if before[t] != after[t]]
    assert all(after[t] == "d" for t in moved)  # nothing reshuffled between the others
    assert 40 <= len(moved) <= 110
    assert owner("x", []) is None


def test_members_split_the_targets_without_overlap_and_one_leads(members: Members) -> None:
    a = members.add("a", 5)
    b = members.add("b", 5)
    a.beat()  # a follows b's join
    assert a.members == b.members == ("a", "b")
    for target in TARGETS:
        assert a.owns(target) != b.owns(target)
    assert a.is_leader and not b.is_leader


def test_a_member_paused_past_its_lease_writes_nothing_until_it_rejoined(
    members: Members,
) -> None:
    a = members.add("a", 1.0)
    _write(a)
    time.sleep(1.3)  # no renewal: as if SIGSTOPped past the lease
    assert not a.holds()
    with pytest.raises(Fenced):
        _write(a)
    epoch = a._lease.epoch if a._lease else 0
    a.beat()  # resumed: the renewal fails, the member rejoins under a new epoch
    assert a._lease is not None and a._lease.epoch == epoch + 1
    _write(a)


def test_the_database_clock_fences_a_member_whose_own_clock_did_not_see_the_pause(
    members: Members, postgres: PostgresServer
) -> None:
    a = members.add("a", 30)
    postgres.sql(members.url, "UPDATE cluster_nodes SET heartbeat_at = now() - interval '40 s'")
    with pytest.raises(Fenced, match="lost its lease"):
        _write(a)


def test_a_join_fences_writes_made_under_the_old_membership_until_the_share_is_recomputed(
    members: Members,
) -> None:
    a = members.add("a", 10)
    _write(a)
    b = members.add("b", 10)
    with pytest.raises(Fenced, match="membership changed"):
        _write(a)
    _write(b)
    a.beat()
    _write(a)


def test_a_dead_member_is_reaped_after_its_lease_and_the_survivor_takes_everything(
    members: Members,
) -> None:
    a = members.add("a", 1.0)
    b = members.add("b", 1.0)
    a.beat()
    assert not all(a.owns(t) for t in TARGETS)
    deadline = time.monotonic() + 10
    while b.members != ("b",) and time.monotonic() < deadline:
        time.sleep(0.3)
        b.beat()  # a never renews again: it was killed
    assert b.members == ("b",)
    assert all(b.owns(t) for t in TARGETS) and b.is_leader


def test_only_one_member_claims_a_delivery(members: Members) -> None:
    a = members.add("a", 10)
    b = members.add("b", 10)
    a.beat()
    now = datetime.now(UTC)
    with a.store.transaction() as tx:
        action = a.store.enqueue(
            tx,
            incident_id=1,
            integration="tickets/webhook",
            role="tickets",
            action="open",
            payload={},
            now=now,
        )
    assert a.store.mark_attempting(action, now)
    assert not b.store.mark_attempting(action, now)


def test_a_second_live_process_with_the_same_member_name_is_refused(members: Members) -> None:
    members.add("a", 1.0, run=True)
    with pytest.raises(StateLocked, match="--node"):
        members.add("a", 1.0, run=True)


def test_once_per_cluster_lets_one_member_through_per_interval(members: Members) -> None:
    a = members.add("a", 10)
    b = members.add("b", 10)
    a.beat()
    assert a.tables.once("ping", 60)
    assert not b.tables.once("ping", 60)
    assert not a.tables.once("ping", 60)


def test_the_database_refuses_a_second_unresolved_incident_for_one_fingerprint(
    members: Members,
) -> None:
    a = members.add("a", 10)
    row = "INSERT INTO incidents (fingerprint, state, target, grp, updated_at, data)"
    with a.store.transaction() as tx:
        tx.execute(row + " VALUES ('fp1', 'resolved', 't', 'g', 'x', '{}')")
        tx.execute(row + " VALUES ('fp1', 'open', 't', 'g', 'x', '{}')")
    with (
        pytest.raises(a.store.backend.errors, match="incidents_one_unresolved"),
        a.store.transaction() as tx,
    ):
        tx.execute(row + " VALUES ('fp1', 'pending', 't', 'g', 'x', '{}')")
