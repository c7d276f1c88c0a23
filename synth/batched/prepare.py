"""The CPU stage of the batched renderers: per-spec plans made on a pool of threads.

Every batched renderer splits its work in two. A *plan* is what one spec needs before the
device can render it, made on the CPU by numpy/OpenCV (SYNAGEN's rotated shape panel, its
summed-area table, noise grid and texture crop; DRAEM's, fractal's and foreground Perlin's
fill, candidate mask and first noise field). Plans depend on their spec and scene alone, so
they are made concurrently on ``PlanPool`` threads (numpy and OpenCV release the GIL) and handed
to the renderer in spec order: the bytes do not depend on the number of threads. The *render*
then runs on the device for the whole batch.

``prepare_batch`` starts a batch's plans and returns at once, so a caller that knows its next
batch (the folder protocol's runner, ``BatchSynthesize``, the benchmark) prepares batch k+1
while batch k renders on the device; ``render_batch`` is ``prepare_batch(...).render()``.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from functools import wraps
from typing import Any, Callable, Sequence

from ..errors import InvalidParameterError


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, where the OS reports one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows: no affinity masks
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """Plan threads when none are asked for: the usable CPUs, shared by the processes that
    ``accelerate launch``/``torchrun`` start on this machine (``LOCAL_WORLD_SIZE``)."""
    try:
        local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        local = 1
    return max(1, usable_cpus() // local)


def check_threads(threads: int | None) -> int:
    """``threads`` as a checked count; ``None`` means ``default_threads()``."""
    if threads is None:
        return default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InvalidParameterError(f"prep_threads must be a positive integer (or None for every usable CPU), got {threads!r}")
    return threads


class PlanPool:
    """Threads that make per-spec plans; ``threads=1`` makes them on the calling thread.

    Results come back in submission order, whatever thread made them.
    """

    def __init__(self, threads: int | None = None) -> None:
        self.threads = check_threads(threads)
        self._executor = (
            ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="anomalyforge-plans")
            if self.threads > 1 else None
        )

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        if self._executor is not None:
            return self._executor.submit(fn, *args)
        done: Future = Future()  # one thread: make it now, in order, without a thread hop
        try:
            done.set_result(fn(*args))
        except BaseException as exc:  # handed to whoever reads the plan, as from a thread
            done.set_exception(exc)
        return done

    def map(self, fn: Callable[..., Any], *iterables: Sequence[Any]) -> list[Future]:
        """One future per item, in order."""
        return [self.submit(fn, *args) for args in zip(*iterables)]


_POOLS: dict[int, PlanPool] = {}
_POOLS_LOCK = threading.Lock()


def _forget_pools() -> None:
    # a forked child (a DataLoader worker) has none of its parent's threads: it makes its own pools
    global _POOLS_LOCK
    _POOLS.clear()
    _POOLS_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)


def plan_pool(threads: int | None = None) -> PlanPool:
    """The process's shared pool with ``threads`` threads (default: ``default_threads()``), made on
    first use and kept, so consecutive batches reuse its threads."""
    count = check_threads(threads)
    with _POOLS_LOCK:
        if count not in _POOLS:
            _POOLS[count] = PlanPool(count)
        return _POOLS[count]


def made_once(maxsize: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``functools.lru_cache`` for plan ingredients shared by several specs of a batch (a drawn
    shape rendered in five size bins): concurrent calls with the same arguments wait for the
    first one's result instead of each making it. Arguments must be hashable."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        made: OrderedDict[tuple, Future] = OrderedDict()
        lock = threading.Lock()

        @wraps(fn)
        def once(*args: Any) -> Any:
            with lock:
                future = made.get(args)
                owner = future is None
                if owner:
                    future = made[args] = Future()
                    while len(made) > maxsize:
                        made.popitem(last=False)
                else:
                    made.move_to_end(args)
            if owner:
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:
                    with lock:  # a failure is not kept: the next call tries again
                        if made.get(args) is future:
                            del made[args]
                    future.set_exception(exc)
            return future.result()

        once.cache_clear = lambda: made.clear()  # type: ignore[attr-defined]
        return once

    return decorate
