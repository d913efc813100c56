"""The suite is sealed: a test that opens a network connection fails, even when the error is caught."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

_INNER = """
import socket


def test_reaches_out():
    try:  # code that swallows the refusal still fails the test
        socket.create_connection(("192.0.2.1", 9), timeout=0.2)  # TEST-NET-1: never routed
    except OSError:
        pass


def test_loopback_is_allowed():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    socket.create_connection(server.getsockname(), timeout=2).close()
    server.close()
"""


def test_a_test_that_connects_fails(tmp_path):
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_inner.py").write_text(_INNER)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stdout[-2000:]
    assert "1 failed, 1 passed" in result.stdout, result.stdout[-2000:]
    assert "test opened network connections: ('192.0.2.1', 9)" in result.stdout  # recorded, though caught
    assert "tests must not use the network" not in result.stdout  # the inner test swallowed the refusal
