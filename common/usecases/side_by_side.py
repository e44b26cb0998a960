"""Independent pieces of one job run in driver threads at the same time.

Spark accepts jobs from several threads of one driver: while it plans one query (single-threaded
driver work, most of a small batch's time) it runs another's tasks, so on a few cores
independent tables are written in about the time of the slowest rather than the sum.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor


def run_side_by_side(calls: Sequence[Callable[[], None]], name: str) -> None:
    """Run ``calls`` at once, each in its own thread, and wait for all of them; then raise the
    first failure in ``calls`` order (the others have finished, so nothing runs on behind it)."""
    if len(calls) <= 1:
        for call in calls:
            call()
        return
    with ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix=name) as pool:
        futures = [pool.submit(call) for call in calls]
    for future in futures:
        future.result()
