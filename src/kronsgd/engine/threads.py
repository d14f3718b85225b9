"""Run workers on threads until the log holds ``end`` records; the kernels release the GIL.

A worker that raises stops the others: each finishes the update in hand (so the log has no
hole) and returns. Ctrl-C reaches only the main thread, which waits here: it stops the
workers the same way. In every case ``run_workers`` returns only once every thread has
ended, with the first error (the worker's own, with its traceback) for the caller to raise
after it has folded the log: no thread outlives a run, and no waiter is left blocked.
"""

from __future__ import annotations

import threading

import numpy as np

from .log import Stopped

_POLL = 0.05  # seconds between the main thread's looks at Ctrl-C while workers run


def run_workers(workers, end: int, guard) -> BaseException | None:
    """Drive every worker's loop on its own thread; returns the first error, or None.

    ``guard`` is the run's InterruptGuard: a Ctrl-C stops the workers.
    """
    log = workers[0].log
    errors: list[BaseException] = []
    start = threading.Barrier(len(workers))  # all begin together, not in thread-start order

    def loop(worker) -> None:
        start.wait()
        try:
            with np.errstate(over="raise", invalid="raise"):  # per thread: overflow is divergence
                while worker.produce(end):
                    pass
        except Stopped:
            pass
        except FloatingPointError as exc:
            errors.append(worker.diverged(float("inf"), worker.buffers.local.size, str(exc)))
            log.stop(errors[-1])
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            errors.append(exc)
            log.stop(exc)

    threads = [threading.Thread(target=loop, args=(w,), name=f"kronsgd-worker-{w.id}", daemon=True) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(_POLL)
            if guard.requested and log.error is None:
                log.stop(KeyboardInterrupt())  # the request stays set: the caller acts on it once all is folded
    log.clear_error()
    return errors[0] if errors else None
