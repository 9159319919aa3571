"""Ctrl-C: every command stops promptly, exits 130 with one line, leaves no report and no worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.skipif(sys.platform == "win32", reason="process groups and SIGINT are POSIX")
@pytest.mark.parametrize("delay", [0.5, 4.0])  # while the workers start; while they quantize
def test_ctrl_c_stops_validate_and_its_workers(tmp_path: Path, delay: float):
    out = tmp_path / "report"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # A new session: the child and its workers form their own process group, which receives the SIGINT
    # as a terminal's Ctrl-C would deliver it (to the whole foreground group).
    # SIGINT back to its default in the child, as for a command typed at a terminal: a shell starts
    # background jobs with SIGINT ignored, and a test run launched that way would otherwise hand the
    # child an ignored Ctrl-C (Python then installs no KeyboardInterrupt handler).
    proc = subprocess.Popen([sys.executable, "-m", "ptqtheory.cli", "validate", "--quick", "--workers", "2",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    pgid = proc.pid
    try:
        # Wait until the workers are running (the progress bar has started), then interrupt.
        deadline = time.monotonic() + 120
        seen = ""
        while time.monotonic() < deadline and "validate:" not in seen:
            line = proc.stderr.readline()
            if not line:
                break
            seen += line
        assert "validate:" in seen, seen
        time.sleep(delay)
        os.killpg(pgid, signal.SIGINT)
        t0 = time.monotonic()
        _, stderr = proc.communicate(timeout=60)
        stopped = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(pgid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, (proc.returncode, stderr[-2000:])
    assert stopped < 30
    assert "Traceback" not in stderr and "leaked semaphore" not in stderr, stderr[-2000:]
    assert stderr.rstrip().splitlines()[-1] == "ptqtheory: interrupted (Ctrl-C); nothing was written"
    assert not (out / "report.json").exists() and not (out / "report.csv").exists()
    deadline = time.monotonic() + 10
    while _alive(pgid) and time.monotonic() < deadline:  # no orphaned worker in the group
        time.sleep(0.2)
    assert not _alive(pgid)
