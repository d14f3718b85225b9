"""The one fold: apply published update records, in log order, to a worker's columns of P and alpha.

Every driver (the serial loop, the threads, the Ray actors, replay) applies updates only
through ``fold``: P[:, cols] += coef · G[batch, cols] for every pair, and alpha receives the
record's coefficients for the points it holds, record by record. A fold is one kernel call
for P (with the fired-neuron tree kept valid in the same sweep when there is one), one for
alpha, then the log learns how far this worker has folded: the kernels cannot fail part
way, and no interrupt lands inside a fold (see interrupts.py).
"""

from __future__ import annotations

from ..kernels import step as K


def fold(log, worker: int, P, alpha, points: tuple[int, int], upto: int, *, local: bool = False, tree=None,
         counters=None) -> int:  # fmt: skip
    """Fold records ``log.folded[worker] .. upto - 1`` into the points start:stop; returns the P rows rewritten.

    With ``local`` False (threads, replay) P (m, n) and alpha (m, n) hold every point and the
    log's Gram rows span all n; with ``local`` True (a Ray actor) P and alpha hold only the
    points start:stop, and so do the log's Gram rows.
    """
    start, stop = points
    rows = 0
    pending = log.slots_between(log.folded[worker], upto)  # P and alpha keep their own marks: a fold that
    if pending.size:  # stopped between the two resumes where it stopped, never applying a record twice
        c0, c1 = (0, stop - start) if local else (start, stop)  # P's columns
        if tree is None:
            rows = K.fold_records(P, log.g_rows, log.row_ptr, log.owner, log.coef, pending, c0, c1, log.touched,
                                  log.n_touched)  # fmt: skip
        else:  # the same additions to P, and the tree kept valid in the same sweep
            rows = tree.fold(worker, P, log, pending, counters)
        log.mark_folded(worker, upto)
        if counters is not None:
            counters["rows_folded"] = counters.get("rows_folded", 0) + rows
    pending = log.slots_between(log.alpha_folded[worker], upto)
    if pending.size:
        K.fold_alpha(alpha, start if local else 0, log.batch, log.row_ptr, log.pair_row, log.owner, log.coef, pending,
                     start, stop)  # fmt: skip
        log.mark_folded(worker, upto, alpha=True)
    return rows
