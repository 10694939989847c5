"""Deterministic crash points for the kill-and-resume tests, installed in a child process only.

Environment variables (N = the step a resume file is saved for):
- TAGAN_TEST_PAUSE_AFTER_SAVE=N: once the resume file of step N is saved, write `paused-N` in the
  working directory and block until the test kills the process (so it dies at a known step);
- TAGAN_TEST_EXIT_AFTER_SAVE=N: once the resume file of step N is saved, os._exit(1) (every rank);
- TAGAN_TEST_KILL_IN_SAVE=N: SIGKILL itself inside the save of step N, after the temp file is
  written and before the rename that would publish it.

`python tests/crash_hooks.py MODULE ARGS...` runs MODULE as __main__ with the hooks installed.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _step(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


def install() -> None:
    """Wrap tagan.training.Checkpointer.save (and os.replace during it) per the environment."""
    from tagan import training

    pause, exit_at, kill_at = (
        _step("TAGAN_TEST_PAUSE_AFTER_SAVE"),
        _step("TAGAN_TEST_EXIT_AFTER_SAVE"),
        _step("TAGAN_TEST_KILL_IN_SAVE"),
    )
    if pause is None and exit_at is None and kill_at is None:
        return
    original_save, original_replace = training.Checkpointer.save, os.replace
    saving: dict[str, int] = {}

    def replace(src: Any, dst: Any) -> None:
        if saving.get("step") == kill_at and Path(dst).suffix == ".pt":
            os.kill(os.getpid(), signal.SIGKILL)  # the temp file is complete, the rename never happens
        original_replace(src, dst)

    def save(self: training.Checkpointer, step: int, *args: Any, **kwargs: Any) -> None:
        saving["step"] = step
        try:
            original_save(self, step, *args, **kwargs)
        finally:
            saving.clear()
        if step == exit_at:
            os._exit(1)
        if step == pause:
            Path(f"paused-{step}").write_text(str(os.getpid()))
            threading.Event().wait()  # blocks until killed

    os.replace = replace  # type: ignore[assignment]
    training.Checkpointer.save = save  # type: ignore[method-assign]


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    install()
    module, sys.argv = sys.argv[1], [sys.argv[1], *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
