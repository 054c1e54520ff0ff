"""Teacher queries answered in chunks by joblib workers (``n_jobs``).

The boundary searches and the zero-shot generator stay in the calling
process: they are vectorised numpy, and every step depends on the answers
to the previous one. What is spread out is the expensive part, the
teacher's answers. Each call of :meth:`Teacher.predict` first does what it
does serially (cache look-up, de-duplication, the query budget, the cut
into ``batch_size`` batches); then, inside :func:`query_jobs`, the batches
to ask are grouped into chunks of consecutive batches and answered by
``joblib.Parallel`` under the active backend (loky by default; Dask or Ray
through ``joblib.parallel_config``). The answers are filed in the caller's
cache in batch order, as if they had been asked serially.

So the rows asked, the rows paid for, the batches the model receives and
the order in which answers are filed are those of the serial run: results
and query counts do not depend on ``n_jobs`` or on the backend.
"""

import contextvars
import pickle
from contextlib import contextmanager

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs

from ._input_space import take_rows

__all__ = ["query_jobs", "answer_in_chunks"]

#: Workers for the teacher calls of the current thread (1: serial).
_N_JOBS = contextvars.ContextVar("db3learn_query_jobs", default=1)


@contextmanager
def query_jobs(n_jobs):
    """Within the block, teacher calls of this thread answer their batches over ``n_jobs`` workers.

    ``n_jobs`` follows joblib: ``None`` means 1 unless a
    ``joblib.parallel_config`` says otherwise, ``-1`` all workers of the
    active backend. Worker threads and processes see 1, so nothing nests.
    """
    token = _N_JOBS.set(int(effective_n_jobs(n_jobs)))
    try:
        yield
    finally:
        _N_JOBS.reset(token)


def _group(batches, n_chunks):
    """Consecutive batches in ``n_chunks`` groups of about equal rows."""
    sizes = np.array([len(b) for b in batches])
    bounds = np.searchsorted(np.cumsum(sizes), np.arange(1, n_chunks) * sizes.sum() / n_chunks, side="left") + 1
    edges = np.unique(np.concatenate([[0], np.minimum(bounds, len(batches)), [len(batches)]]))
    return [batches[a:b] for a, b in zip(edges[:-1], edges[1:])]


def _answer_chunk(fork, X, sizes, n_before):
    """In a worker: ask the batches of one chunk, in order; never raises.

    Returns the label of each row (``None`` where unanswered), whether each
    row was answered, what the fork learnt beyond the answers, and the
    error that stopped the chunk (with its cause, when it pickles).
    """
    batches = np.split(np.arange(len(X)), np.cumsum(sizes)[:-1])
    codes = np.full(len(X), -1, dtype=np.int64)
    error = cause = None
    try:
        fork._ask_batches(X, batches, None, codes, n_before=n_before)
    except Exception as exc:  # returned, so that the answers of every chunk are filed first
        error = exc
        if exc.__cause__ is not None:
            try:
                pickle.dumps(exc.__cause__)
                cause = exc.__cause__
            except Exception:  # an unpicklable cause stays behind; the message names it
                cause = None
    finally:
        fork._close_fork()
    answered = codes >= 0
    labels = np.asarray(fork._labels, dtype=object)[codes[answered]] if answered.any() else np.empty(0, dtype=object)
    return labels, answered, fork._fork_state(), error, cause


def answer_in_chunks(teacher, X, batches, keys, codes):
    """Answer ``batches`` (row indices into ``X``) over the workers of :func:`query_jobs`.

    Files the answers as :meth:`Teacher._ask_batches` does and returns
    ``True``; returns ``False`` (nothing asked) when there is one worker or
    one batch, so that the caller asks serially. Each worker gets a copy of
    the teacher without its cache or budget (the caller reserved the rows
    within the budget) and the rows of its chunk. After every chunk is
    back, their answers are filed (and counted) in batch order; then the
    first error, in batch order, is raised. Answers of the other chunks are
    kept. Each chunk gets a copy of its own, so that chunks answered by
    threads of one process (the threading backend) share no connection,
    counter or label table.
    """
    n_jobs = _N_JOBS.get()
    if n_jobs < 2 or len(batches) < 2:
        return False
    chunks = _group(batches, min(n_jobs, len(batches)))
    starts = np.cumsum([0] + [sum(len(b) for b in chunk) for chunk in chunks])
    tasks = (
        delayed(_answer_chunk)(
            teacher._fork(len(chunks)), take_rows(X, np.concatenate(chunk)), [len(b) for b in chunk], int(start)
        )
        for chunk, start in zip(chunks, starts)
    )
    results = Parallel(n_jobs=len(chunks))(tasks)
    error = None
    for chunk, (labels, answered, state, exc, cause) in zip(chunks, results):
        teacher._merge_fork_state(state)
        offset = 0
        position = np.cumsum(answered) - 1  # row of the chunk -> index into labels
        for idx in chunk:
            rows = slice(offset, offset + len(idx))
            offset += len(idx)
            if answered[rows].all():
                teacher._file(idx, labels[position[rows]], keys, codes)
        if exc is not None and error is None:
            if cause is not None:
                exc.__cause__ = cause
            error = exc
    if error is not None:
        raise error
    return True
