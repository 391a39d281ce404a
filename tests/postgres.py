"""A fresh PostgreSQL database per test, on the server the machine runs (127.0.0.1:5432, trust auth).

Tests that need it say so by taking the ``postgres_url`` fixture. Where no server answers they are skipped with a
reason, unless ``UNMARK_TEST_POSTGRES`` names one: then (as in CI, whose ``.ci/run`` exports it) it must answer.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest

DEFAULT_URL = "postgresql://127.0.0.1:5432/test"


def server_url() -> str:
    return os.environ.get("UNMARK_TEST_POSTGRES") or DEFAULT_URL


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """Create an empty database on the server, yield its URL, and drop it afterwards."""
    import psycopg

    admin_url = server_url()
    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        if os.environ.get("UNMARK_TEST_POSTGRES"):
            raise  # a server was named: its absence is a failure, not a reason to skip
        pytest.skip(f"needs PostgreSQL: none answered at {admin_url} ({str(error).strip().splitlines()[0]}); "
                    "start one or set UNMARK_TEST_POSTGRES")
    name = f"unmark_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            base, _, _ = admin_url.rpartition("/")
            yield f"{base}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
