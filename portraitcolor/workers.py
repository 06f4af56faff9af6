"""Worker processes for prepare: started with signals held, Ctrl-C handled by the parent
only, results in input order. Each worker turns photos into set images with
variants.process_source; a bounded number of batches is in flight at a time.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import signal
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

from . import variants
from .config import PrepareOptions
from .filters import Dropped

# Images per task sent to a worker: enough to hide the inter-process overhead, few
# enough that Ctrl-C and --limit stop soon.
_BATCH = 8


def _worker_setup(options: PrepareOptions) -> None:
    import cv2
    from PIL import Image

    # One OpenCV thread per process: the parallelism is the processes.
    cv2.setNumThreads(1)
    # Our own --max-pixels check replaces Pillow's (it would refuse above 2x its default
    # whatever the user asked for, and warn on the way).
    Image.MAX_IMAGE_PIXELS = options.max_pixels or None
    # Pillow's advice to convert such palettes to RGBA is what read_image does anyway.
    warnings.filterwarnings("ignore", message="Palette images with Transparency", category=UserWarning)


def _keep_freed_memory() -> None:
    """Let a worker reuse the memory of one photo's arrays for the next.

    glibc hands a block of a few megabytes back to the system when it is freed (as its own
    mapping, or by trimming the heap), so each photo's arrays came from fresh pages: 75
    thousand page faults for 64 photos instead of 11 thousand, and 8-13% of prepare's
    throughput (BENCHMARKS.md). Blocks under 32 MB now come from the heap, which keeps up to
    64 MB free. A C library without mallopt (macOS, Windows) is left as it is.
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    mallopt(_M_TRIM_THRESHOLD, 64 << 20)


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def _worker_ignore_signals() -> None:
    # Ctrl-C reaches the whole process group; the parent alone decides how to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _worker_init(options: PrepareOptions) -> None:
    _worker_ignore_signals()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _HELD_SIGNALS)  # held by the parent while forking us
    _keep_freed_memory()  # a worker process's own allocator; never the caller's (--workers 1, the API)
    _worker_setup(options)


_HELD_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM held back while the worker processes are forked. A signal that came
    before a worker had set its own handlers raised KeyboardInterrupt inside the worker's
    start-up: a traceback on the terminal and a broken pool (a RuntimeError) in the parent.
    Held signals reach the parent as soon as the workers are up."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextlib.contextmanager
def _no_opencv_threads() -> Iterator[None]:
    """OpenCV's own worker threads stopped while the worker processes are forked.

    Its thread pool does not survive fork(): a child forked while the parent's pool threads
    were alive hung for good in its first OpenCV call (cv2.setNumThreads in _worker_setup),
    so prepare never finished after any multithreaded OpenCV work in the same process
    (colorize through the Python API, a notebook). Setting one thread stops the pool's
    threads; the parent's setting is restored once the workers are up.
    """
    import cv2

    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


def _process_batch(items: list[tuple[str, str]], job: variants.Job) -> list[list[variants.Kept | Dropped]]:
    return [variants.process_source(path, name, job) for path, name in items]


def processed(items: list[tuple[str, str]], job: variants.Job, workers: int) -> Iterator[list[variants.Kept | Dropped]]:
    """Each (path, name)'s set images, in input order; a bounded number of batches in flight,
    so memory stays flat and stopping early (--limit, Ctrl-C) cancels what has not started."""
    if workers <= 1:
        _worker_setup(job.options)
        for path, name in items:
            yield variants.process_source(path, name, job)
        return
    batches = iter([items[start : start + _BATCH] for start in range(0, len(items), _BATCH)])
    with ProcessPoolExecutor(max_workers=workers, initializer=_worker_init, initargs=(job.options,)) as pool:
        with _signals_held(), _no_opencv_threads():  # the first submit forks every worker
            pending = collections.deque(pool.submit(_process_batch, batch, job) for batch in itertools.islice(batches, workers * 4))
        try:
            while pending:
                results = pending.popleft().result()
                following = next(batches, None)
                if following is not None:
                    pending.append(pool.submit(_process_batch, following, job))
                yield from results
        finally:
            for future in pending:
                future.cancel()


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
