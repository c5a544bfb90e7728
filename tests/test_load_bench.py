"""``storybot bench load --quick`` end to end, on the local PostgreSQL: two Slack chat processes
and two workers under a burst of 30 channels, one worker killed with SIGKILL and started again.
It runs in under a minute here, so the suite keeps it (the issue's rule); it fails on what a
community would notice: a passage lost or written twice, a slash command past Slack's 3 s."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import POSTGRES_ADMIN_URL, _postgres_available
from tests.test_config import REPO


def test_a_burst_with_a_worker_killed_loses_no_passage_and_writes_none_twice() -> None:
    if (reason := _postgres_available()) is not None:
        pytest.skip(reason)
    finished = subprocess.run(
        [sys.executable, "-m", "adapters.cli", "bench", "load", "--quick", "--json", "--admin-url", POSTGRES_ADMIN_URL],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    figures = json.loads(finished.stdout.strip().splitlines()[-1])
    assert figures["channels"] == 30 and figures["turns_per_channel"] == 2
    assert figures["turns_asked"] == figures["turns_shown"] == 60, figures
    assert figures["passages_lost"] == 0 and figures["passages_written_twice"] == 0, figures
    assert figures["acks_over_3s"] == 0 and figures["failed_requests"] == 0, figures
    assert figures["worker_killed_at_s"] is not None
