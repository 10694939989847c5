"""Process-wide state a test may change, put back after each test so that no test depends on the order."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator

import pytest
from threadpoolctl import threadpool_info, threadpool_limits


@pytest.fixture(autouse=True)
def _restore_process_state() -> Iterator[None]:
    """Restore torch's and the BLAS libraries' thread counts (`tagan tag` in-process sets both to 1) and the SIGALRM
    handler, and cancel any pending alarm, after each test."""
    torch = sys.modules.get("torch")  # only when already imported: torch-free tests stay torch-free
    threads = torch.get_num_threads() if torch is not None else None
    blas = _blas_threads()
    alarm_handler = signal.getsignal(signal.SIGALRM)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, alarm_handler)
        if torch is not None and threads is not None and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        if _blas_threads() != blas:
            threadpool_limits(limits=blas)


def _blas_threads() -> dict[str, int]:
    """Thread count of each loaded BLAS library, by its path."""
    return {p["filepath"]: p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}
