"""One writer per RUN_DIR: a second run or publish fails at once, and a killed holder leaves no lock.

Why: two `synthgen run` on one --out used to share .synthgen/tmp, crash in finalize and pay most items
twice; the lock is an OS file lock, so the kernel drops it when the holder dies, even on SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from synthgen.cli import main
from tests.conftest import REPO

DEMO = REPO / "recipes" / "offline-demo" / "recipe.yaml"

HOLD = """
import sys, time
from pathlib import Path
from synthgen.rundir import RunDir
with RunDir(Path(sys.argv[1])).locked("run"):
    print("locked", flush=True)
    time.sleep(120)
"""


def _hold(out: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_writer_fails_at_once_naming_the_holder_and_a_killed_holder_frees_it(tmp_path: Path) -> None:
    out = tmp_path / "run"
    holder = _hold(out)
    try:
        runner = CliRunner()
        started = time.monotonic()
        busy = runner.invoke(main, ["run", str(DEMO), "--offline", "--limit", "2", "--out", str(out)])
        assert busy.exit_code == 2, busy.output
        assert time.monotonic() - started < 5
        assert f"pid {holder.pid}" in busy.output and "in use" in busy.output
        assert not (out / "run.json").exists() and not (out / ".synthgen" / "journal").exists()
        publishing = runner.invoke(main, ["publish", str(out), "--repo-id", "org/name"])
        assert publishing.exit_code == 2 and f"pid {holder.pid}" in publishing.output
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    done = CliRunner().invoke(main, ["run", str(DEMO), "--offline", "--limit", "2", "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert (out / "run.json").is_file()
    assert not (out / ".synthgen" / "lock.json").exists()  # the owner note goes with the lock
