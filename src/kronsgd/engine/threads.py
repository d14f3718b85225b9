"""Run workers on threads until the log holds ``end`` records; the kernels release the GIL.

A worker that raises stops the others (they finish the update in hand, so the log has no
hole) and its exception, with its own traceback, is returned to the caller.
"""

from __future__ import annotations

import threading

import numpy as np

from .log import Stopped


def run_workers(workers, end: int) -> BaseException | None:
    """Drive every worker's loop on its own thread; returns the first error, or None."""
    engine = workers[0].engine
    log = engine.log
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
            errors.append(engine._diverged(float("inf"), np.zeros(engine.batch_size), cause=str(exc)))
            log.stop(errors[-1])
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            errors.append(exc)
            log.stop(exc)

    threads = [threading.Thread(target=loop, args=(w,), name=f"kronsgd-worker-{w.id}", daemon=True) for w in workers]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except BaseException as exc:  # e.g. KeyboardInterrupt in the caller: stop the workers, then re-raise
        log.stop(exc)
        for t in threads:
            t.join()
        log.clear_error()
        raise
    log.clear_error()
    return errors[0] if errors else None
