"""Fixtures of the serving tests: a throwaway PostgreSQL cluster for the whole session (skipped, with the
reason, where PostgreSQL or psycopg is missing)."""

from __future__ import annotations

import pg_cluster
import pytest


@pytest.fixture(scope="session")
def pg_cluster_session():
    reason = pg_cluster.missing()
    if reason:
        pytest.skip(reason)
    cluster = pg_cluster.Cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster_session) -> str:
    """The URL of a new, empty database on the session's cluster."""
    return pg_cluster_session.new_database()
