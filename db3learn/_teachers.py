"""Teachers: one wrapper around anything that answers with labels.

Every estimator of db3learn talks to its teacher through a :class:`Teacher`:
it counts the rows asked (queries), enforces an optional query budget, sends
batches of a fixed size, caches each row's answer so that no row is asked
twice, and checks that the answers are labels, one per row.
"""

import contextlib
import copy
import hashlib
import numbers
import os
import threading

import numpy as np
from sklearn.base import clone

from . import _parallel
from ._input_space import is_frame, take_rows
from .exceptions import QueryBudgetExceeded, TeacherAnswerError, TeacherError

__all__ = ["Teacher", "TorchTeacher", "as_teacher"]


def _plural(n, word):
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def encode_labels(classes, labels):
    """Index of each label in ``classes`` (any order, any dtype), -1 for labels not in it."""
    classes = np.asarray(classes)
    sorter = np.argsort(classes)
    pos = np.clip(np.searchsorted(classes, labels, sorter=sorter), 0, len(sorter) - 1)
    codes = sorter[pos]
    codes[classes[codes] != labels] = -1
    return codes


def _row_keys(X):
    """128-bit digests of each row's bytes (dtype and row shape included); for a DataFrame, of its values."""
    if is_frame(X):
        return _frame_keys(X)
    X = np.ascontiguousarray(X)
    salt = f"{X.dtype.str}{X.shape[1:]}".encode()[:16]
    rows = X.reshape(len(X), -1)
    return [hashlib.blake2b(r, digest_size=16, salt=salt).digest() for r in rows]


def _frame_keys(X):
    """128-bit keys of a DataFrame's rows: two pandas row hashes (values, columns and dtypes included)."""
    import pandas as pd

    salt = hashlib.blake2b(
        repr([(str(c), str(t)) for c, t in zip(X.columns, X.dtypes)]).encode(), digest_size=8
    ).digest()
    a = pd.util.hash_pandas_object(X, index=False).to_numpy()
    b = pd.util.hash_pandas_object(X, index=False, hash_key="db3learn-rowkey2").to_numpy()
    a = a ^ np.frombuffer(salt, dtype=np.uint64)[0]
    both = np.column_stack([a, b]).astype(np.uint64)
    return [row.tobytes() for row in both]


def _describe_batch(batch):
    if is_frame(batch):
        return f"a DataFrame of shape {batch.shape}"
    return f"a batch of shape {batch.shape}, dtype {batch.dtype}"


def _check_rows(X):
    """The rows ``X`` given to :meth:`Teacher.predict`: a DataFrame as it is, anything else as an array.

    Raises TypeError for a scipy sparse matrix or array, which ``np.asarray``
    would turn into a 0-d object array.
    """
    if is_frame(X):
        return X
    from scipy import sparse

    if sparse.issparse(X):
        raise TypeError(
            f"Teacher.predict takes a dense array or a DataFrame; got a scipy.sparse {type(X).__name__} of "
            f"shape {X.shape}: convert it with X.toarray()."
        )
    return np.asarray(X)


def _kind(value):
    """The kind of one label, as labels of different kinds must not mix.

    "booleans", "numbers", "strings" or "bytes"; for any other type, the
    type's name (:func:`_check_one_type` refuses "NoneType").
    """
    if isinstance(value, (bool, np.bool_)):  # before numbers: True == 1 would make them one class
        return "booleans"
    if isinstance(value, numbers.Real):  # python and numpy ints and floats; 1 and 1.0 are one class
        return "numbers"
    if isinstance(value, str):
        return "strings"
    if isinstance(value, bytes):
        return "bytes"
    return type(value).__name__


def _show(values):
    """A few values, as Python writes them: ``'3', '5'``."""
    return ", ".join(repr(v.item() if isinstance(v, np.generic) else v) for v in values)


def _kind_name(values):
    """What a few labels of one kind are, in words: "integers", "floats", "strings"..."""
    kind = _kind(values[0])
    if kind != "numbers":
        return kind if kind in ("booleans", "strings", "bytes") else f"{kind} values"
    if all(isinstance(v, numbers.Integral) for v in values):
        return "integers"
    return "floats" if all(isinstance(v, float) for v in values) else "numbers"


def _check_one_type(labels, what):
    """The kind (see :func:`_kind`) of the labels of a 1-D array; TeacherAnswerError if an object array mixes kinds or holds None.

    numpy arrays of another dtype hold one type by construction; an object
    array (pandas, skorch, a list with None) is checked value by value.
    """
    if labels.dtype != object:
        kinds = {"b": "booleans", "i": "numbers", "u": "numbers", "f": "numbers", "U": "strings", "S": "bytes"}
        return kinds.get(labels.dtype.kind)
    first = {}  # type -> first value of that type
    for v in labels.tolist():
        first.setdefault(type(v), v)
    if not first:
        return None
    kinds = {_kind(v) for v in first.values()}
    if len(kinds) == 1 and type(None) not in first:
        return kinds.pop()
    raise TeacherAnswerError(
        f"The teacher must return labels of one type, all numbers or all strings (or all booleans); it returned {what} of "
        f"{', '.join(t.__name__ for t in first)} values (e.g. {_show(first.values())}). Make it return one label per row, "
        "of one type, as a classifier's predict(X) does."
    )


def _scores_not_labels(values, dtype):
    """Non-integer ``values`` received where class labels were expected, in words (the same for every teacher)."""
    return (
        f"non-integer values such as [{', '.join(str(v) for v in values[:3])}] (dtype {dtype}), which look like scores "
        "or probabilities (what predict_proba returns), not class labels"
    )


_DEFAULT_KEPT_BYTES = 2 * 2**30  # keep_rows=True: at most 2 GiB of rows


class _KeptRows:
    """Rows answered, with their label codes, thinned uniformly when they outgrow a memory limit."""

    def __init__(self):
        self.chunks = []  # (rows, codes)
        self.nbytes = 0
        self.p = 1.0  # probability with which each row answered is kept
        self.rng = np.random.default_rng(0)

    def add(self, X, idx, codes, limit):
        """Keep rows ``idx`` of ``X`` with their codes (``codes[idx]``), thinned as the rows kept so far."""
        codes = codes[idx]
        if self.p < 1.0:
            keep = self.rng.random(len(idx)) < self.p
            idx, codes = idx[keep], codes[keep]
        if not len(idx):
            return
        rows = take_rows(X, idx)
        if not is_frame(rows):  # a copy; float64 kept as float32 (half the memory; students train in float32)
            rows = np.array(rows, dtype=np.float32 if rows.dtype == np.float64 else rows.dtype, copy=True)
        if self.chunks and not _same_layout(self.chunks[0][0], rows):
            return  # rows of another shape or columns (another transfer set): left out
        self.chunks.append((rows, np.asarray(codes, dtype=np.int64)))
        self.nbytes += _nbytes(rows)
        while self.nbytes > limit and self.chunks:
            self.p /= 2
            thinned = []
            for rows, codes in self.chunks:
                keep = np.flatnonzero(self.rng.random(len(codes)) < 0.5)
                if len(keep):
                    thinned.append((take_rows(rows, keep), codes[keep]))
            self.chunks = thinned
            self.nbytes = sum(_nbytes(r) for r, _ in thinned)

    def get(self):
        if not self.chunks:
            return np.empty((0,)), np.empty(0, dtype=np.int64)
        rows = [r for r, _ in self.chunks]
        if is_frame(rows[0]):
            import pandas as pd

            rows = pd.concat(rows, ignore_index=True)
        else:
            rows = np.concatenate(rows)
        self.chunks = [(rows, np.concatenate([c for _, c in self.chunks]))]
        return self.chunks[0]


def _upgraded(state):
    """A pickled Teacher's state in this version's form (``keep_rows`` became a property)."""
    if "keep_rows" in state:
        state["_keep_rows"] = state.pop("keep_rows")
    state.setdefault("_keep_rows", False)
    state.setdefault("_unkept", set())
    return state


def _same_layout(a, b):
    if is_frame(a) or is_frame(b):
        return is_frame(a) and is_frame(b) and list(a.columns) == list(b.columns) and list(a.dtypes) == list(b.dtypes)
    return a.shape[1:] == b.shape[1:] and a.dtype == b.dtype


def _nbytes(rows):
    return int(rows.memory_usage(deep=True, index=False).sum()) if is_frame(rows) else rows.nbytes


class Teacher:
    """A label-only teacher: counts, budgets, batches and caches its queries.

    Wraps any object that maps a batch of inputs to one label per row: a
    fitted scikit-learn classifier or :class:`~sklearn.pipeline.Pipeline`,
    a skorch net, or a plain callable ``f(X) -> labels``. Every estimator of
    db3learn wraps what it is given in a ``Teacher`` (see :func:`as_teacher`);
    wrap it yourself to set a query budget or a batch size, or to share one
    cache between several estimators.

    One **query** is one row answered by the wrapped model. Rows whose
    answer is cached cost nothing: the cache is keyed by the row's bytes (its
    dtype and shape included), so a row is never asked twice while the cache
    is on. Rows of a call that failed (the model raised, or answered
    something that is not labels) are not answered and do not count.

    A ``Teacher`` may be shared by threads: the budget is reserved
    atomically, so that threads together never exceed it, and a row that
    one thread is asking is waited for, not asked again, by the others. A
    copy in another process (joblib's process backends, ``GridSearchCV``
    with ``n_jobs``) cannot share an in-memory budget: a copy of a
    ``Teacher`` with a budget refuses to spend it (set ``max_queries``
    again in that process to allow it); one without a budget works as
    usual, with a cache of its own. A :class:`~db3learn.RemoteTeacher` with
    a ``cache_dir`` keeps its budget on disk, where it holds across
    processes and reruns.

    Parameters
    ----------
    model : object with ``predict(X)``, or callable
        The teacher. ``model.predict(X)`` (or ``model(X)`` for a callable)
        must return an array-like of shape (n_rows,) with one label per row.
        A fitted scikit-learn estimator is used as it is: it is never refit,
        and ``sklearn.base.clone`` of a ``Teacher`` returns the same
        ``Teacher`` (same model, counter and cache).
    batch_size : int, default=4096
        Rows per call of the wrapped model. Larger calls are split.
    max_queries : int or None, default=None
        Query budget: the most rows the wrapped model may answer over the
        wrapper's lifetime. ``None`` means no budget. It may be raised later
        (``teacher.max_queries = ...``) to resume after
        :class:`~db3learn.exceptions.QueryBudgetExceeded`.
    cache : bool, default=True
        Whether to cache answers per row (in memory, 16 bytes of digest and
        one label code per row).
    classes : array-like or None, default=None
        The labels the teacher may return. Defaults to ``model.classes_``
        when the model has one; otherwise any label is accepted here and the
        estimators check labels against the classes seen in their ``fit``.
    keep_rows : bool or int, default=False
        Keep every row answered (and every row recalled from a disk cache)
        with its label, for :meth:`queried_rows`: the training data of
        ``DB3Distiller(queried_rows=...)``, which switches it on for its fit
        (and off again after) when it is off. ``True`` keeps up to 2 GiB of
        rows (float64 rows are kept as float32), an integer up to that many
        bytes; past the limit, rows are thinned uniformly at random. May be switched on later
        (``teacher.keep_rows = True``): rows answered before are kept when
        they are asked again (answered from the cache, at no cost). Each
        distinct row is kept once.

    Attributes
    ----------
    n_queries : int
        Rows the wrapped model has answered so far.
    n_cache_hits : int
        Rows answered from the cache.
    classes_ : ndarray of shape (n_classes,) or None
        The labels the teacher may return, if known.

    Raises
    ------
    QueryBudgetExceeded
        From :meth:`predict`, when answering would exceed ``max_queries``.
        The rows that fit into the budget are asked and cached first.
    TeacherError
        From :meth:`predict`, when the wrapped model raises, or when a copy
        of a teacher with a budget is asked to spend it in another process.
    TeacherAnswerError
        From :meth:`predict`, when the answer is not one label per row: the
        wrong length, non-integer floats (scores, e.g. a ``predict_proba``
        column), labels mixing types (None, numbers, strings), labels of
        another type than earlier answers, or a label outside ``classes``.
    TypeError
        From :meth:`predict`, for a scipy sparse ``X``.

    See Also
    --------
    TorchTeacher : a ``torch.nn.Module`` as a teacher, batched on its device.
    as_teacher : wrap anything in the right ``Teacher``.

    Examples
    --------
    >>> import numpy as np
    >>> from db3learn import Teacher
    >>> teacher = Teacher(lambda X: (X[:, 0] > 0).astype(int), max_queries=5)
    >>> teacher.predict(np.array([[1.0], [-1.0], [1.0]]))
    array([1, 0, 1])
    >>> teacher.n_queries, teacher.n_cache_hits
    (2, 1)
    """

    _store = None  # a persistent answer store: get_many(keys) -> labels or None, set_many(keys, labels, lease)
    _passthrough_errors = ()  # errors of _predict_batch raised as they are, not wrapped in TeacherError

    def __init__(self, model, *, batch_size=4096, max_queries=None, cache=True, classes=None, keep_rows=False):
        if isinstance(model, Teacher):
            raise TypeError("model is already a Teacher; pass it directly instead of wrapping it twice.")
        if not (hasattr(model, "predict") or callable(model)):
            raise TypeError(
                "A teacher must have a predict(X) method or be callable as f(X) -> labels; "
                f"got {type(model).__name__}. Wrap your model in a function that returns one label per row."
            )
        if not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        self.model = model
        self.batch_size = int(batch_size)
        self.max_queries = max_queries
        self.cache = cache
        self.classes = classes
        self.n_queries = 0
        self.n_cache_hits = 0
        self._answers = {}  # row digest -> label code
        self._labels = []  # label code -> label, in first-seen order
        self._codes = {}  # label -> label code
        self._memo = {}  # results derived from answers (boundary distances), shared by clones
        self._kept = _KeptRows()
        self.keep_rows = keep_rows
        self._init_sync()

    # -- shared state: threads share one Teacher, processes get copies ----------
    def _init_sync(self):
        """Fresh synchronisation state, never pickled or copied.

        ``_lock`` guards the cache, the counters and the budget;
        ``_in_flight`` maps the digest of each row being asked to an event
        set when its ask is over, so that threads asking the same row wait
        for one answer instead of paying twice; ``_reserved`` counts the
        rows in flight, held against the budget until they are answered;
        ``_pending_keep`` maps a thread in ``predict`` to the rows of its
        batch to keep once the call is over (see ``_keep``).
        """
        self._lock = threading.RLock()
        self._in_flight = {}
        self._reserved = 0
        self._pending_keep = {}

    def __getstate__(self):
        state = self.__dict__.copy()
        for name in ("_lock", "_in_flight", "_reserved", "_pending_keep"):
            state.pop(name, None)
        if self.max_queries is not None and "_budget_pid" not in state:
            state["_budget_pid"] = os.getpid()  # a copy in another process may not spend this budget
        return state

    def __setstate__(self, state):
        self.__dict__.update(_upgraded(state))
        self._init_sync()

    @property
    def keep_rows(self):
        """Whether (and up to how many bytes) answered rows are kept; see the class docstring."""
        return self._keep_rows

    @keep_rows.setter
    def keep_rows(self, value):
        lock = self.__dict__.get("_lock")
        with lock if lock is not None else contextlib.nullcontext():
            if value and not self.__dict__.get("_keep_rows"):
                # rows answered before are kept when they are asked again (from the cache): each of them once
                self._unkept = set(self._answers)
            elif not value:
                self._unkept = set()
            self._keep_rows = value

    @property
    def max_queries(self):
        """The query budget in rows, or None; may be raised (or set) at any time."""
        return self._max_queries

    @max_queries.setter
    def max_queries(self, value):
        if value is not None and (not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0):
            raise ValueError(f"max_queries must be a non-negative integer or None, got {value!r}.")
        self._max_queries = value
        self.__dict__.pop("_budget_pid", None)  # set here, the budget belongs to this process

    # -- scikit-learn integration -------------------------------------------
    def __sklearn_clone__(self):
        return self

    def __repr__(self):
        budget = "" if self.max_queries is None else f", max_queries={self.max_queries}"
        return f"{type(self).__name__}({type(self.model).__name__}, n_queries={self.n_queries}{budget})"

    @property
    def classes_(self):
        if self.classes is not None:
            return np.asarray(self.classes)
        return self._model_classes()

    def _model_classes(self):
        classes = getattr(self.model, "classes_", None)
        if classes is None:
            return None
        if _is_skorch_net(self.model):  # skorch's predict returns indices into classes_
            return np.arange(len(classes))
        return np.asarray(classes)

    # -- queries --------------------------------------------------------------
    def _predict_batch(self, X):
        """The wrapped model's raw answer for one batch (override in subclasses)."""
        if hasattr(self.model, "predict"):
            return self.model.predict(X)
        return self.model(X)

    def predict(self, X):
        """Labels of the rows of ``X``, asking the model only for uncached rows.

        Parameters
        ----------
        X : array-like of shape (n_rows, ...)
            Inputs in the form the wrapped model expects.

        Returns
        -------
        labels : ndarray of shape (n_rows,)
            The teacher's label for each row, of the dtype the model returns.

        Raises
        ------
        QueryBudgetExceeded, TeacherError, TeacherAnswerError, TypeError
            See the class docstring. Rows answered before the error stay
            cached.
        """
        X = _check_rows(X)
        if X.ndim < 1:
            raise ValueError(f"Expected a batch of rows, got a scalar {X!r}.")
        n = len(X)
        if n == 0:
            return np.asarray(self._labels)[:0] if self._labels else np.empty(0)
        codes = np.full(n, -1, dtype=np.int64)
        if not self.cache:
            n_answered = self._ask(X, np.arange(n), None, codes)
        else:
            keys = _row_keys(X)
            self._lookup(keys, np.arange(n), codes)
            with self._keeping_in_row_order(X, codes):
                if self.keep_rows and self._unkept:  # rows answered before keep_rows was on, asked again
                    with self._lock:
                        again = []
                        for i in np.flatnonzero(codes >= 0).tolist():
                            if keys[i] in self._unkept:
                                self._unkept.discard(keys[i])
                                again.append(i)
                        self._keep(X, np.asarray(again, dtype=np.int64), codes)
                missing = np.flatnonzero(codes < 0)
                if len(missing) and self._store is not None:
                    self._recall(X, keys, missing, codes)
                n_answered = self._ask_missing(X, keys, codes)
        with self._lock:
            self.n_cache_hits += n - n_answered
            labels = np.asarray(self._labels)[codes]
        self._check_known(labels)
        return labels

    def _lookup(self, keys, idx, codes):
        """Fill ``codes[idx]`` from the in-memory cache, where it has the answer."""
        get = self._answers.get
        for i in idx:
            c = get(keys[i])
            if c is not None:
                codes[i] = c

    def _ask_missing(self, X, keys, codes):
        """Ask the model for the rows whose ``codes`` are missing, each distinct row once.

        A row that another thread is asking is not asked again: this call
        waits for that answer (and asks the row itself only if that ask
        failed). Returns the rows answered by this call.
        """
        n_answered = 0
        while True:
            missing = np.flatnonzero(codes < 0)
            if not len(missing):
                return n_answered
            with self._lock:
                self._lookup(keys, missing, codes)  # answered meanwhile, or a copy of a row answered above
                first, others = {}, {}
                for i in missing[codes[missing] < 0]:
                    event = self._in_flight.get(keys[i])
                    if event is not None:
                        others[keys[i]] = event
                    else:
                        first.setdefault(keys[i], i)
                done = threading.Event()
                for k in first:
                    self._in_flight[k] = done
            try:
                if first:
                    n_answered += self._ask(
                        X, np.fromiter(first.values(), dtype=np.int64, count=len(first)), keys, codes
                    )
            finally:
                with self._lock:
                    for k in first:
                        del self._in_flight[k]
                done.set()
            for event in others.values():
                event.wait()

    def _recall(self, X, keys, missing, codes):
        """Fill ``codes[missing]`` from the persistent store, where it has the answer."""
        stored = self._store.get_many([keys[i] for i in missing])
        found = [j for j, label in enumerate(stored) if label is not None]
        if found:
            idx = missing[found]
            with self._lock:
                new = self._encode(np.asarray([stored[j] for j in found]))
                codes[idx] = new
                self._answers.update(zip((keys[i] for i in idx), new.tolist()))
                # a row repeated in X is kept once, as it is asked once: the searches' batches repeat rows
                _, first = np.unique(np.asarray([keys[i] for i in idx], dtype=object), return_index=True)
                self._keep(X, idx[np.sort(first)], codes)

    def _ask(self, X, to_ask, keys, codes):
        """Ask the model for rows ``to_ask``; fill ``codes``, the caches, the counter.

        The rows that fit into the budget are reserved (atomically, so that
        threads sharing the teacher cannot overspend it) and asked first, in
        batches of ``batch_size``; then, if some rows did not fit, the budget
        error. Returns the rows answered. Rows reserved but not answered (the
        model failed) are given back to the budget: only answers count.
        """
        n_total = len(to_ask)
        with self._lock:
            allowed = self._reserve(n_total)
        asked = to_ask[:allowed]
        batches = [asked[start : start + self.batch_size] for start in range(0, allowed, self.batch_size)]
        try:
            if not _parallel.answer_in_chunks(self, X, batches, keys, codes):  # n_jobs: see _parallel
                self._ask_batches(X, batches, keys, codes)
        finally:
            answered = asked[codes[asked] >= 0]
            n_answered = len(answered)
            with self._lock:
                self._give_back(allowed - n_answered)
                self._keep(X, answered, codes)
        if allowed < n_total:
            self._raise_budget(n_total - allowed, n_total)
        return n_answered

    def _ask_batches(self, X, batches, keys, codes, n_before=0):
        """Ask each batch of row indices in turn (subclasses may ask several at once).

        ``n_before``: rows of the same call asked before these (for messages).
        """
        n_asked = n_before
        for idx in batches:
            answer = self._fetch(X, idx, keys, n_asked)
            self._record(idx, answer, keys, codes)
            n_asked += len(idx)

    # -- the rows answered, kept as training data ------------------------------
    @contextlib.contextmanager
    def _keeping_in_row_order(self, X, codes):
        """Within one ``predict`` call, keep the rows of ``X`` in their order in ``X``, whatever answered them.

        Rows recalled from the caches and rows the model answered are kept in
        separate steps; kept as they come, a batch asked again from the cache
        would be kept in another order than when it was first asked, and a
        student trained on the kept rows (whose batches follow that order)
        would not be reproducible: a second fit with the same seed would pick
        other mixtures to ask. Each step's rows wait here until the call is
        over (also when it fails: every answer received is kept).
        """
        if not self.keep_rows:
            yield
            return
        me = threading.get_ident()
        with self._lock:
            self._pending_keep[me] = (X, [])
        try:
            yield
        finally:
            with self._lock:
                _, parts = self._pending_keep.pop(me)
                if parts:
                    self._keep(X, np.sort(np.concatenate(parts)), codes)

    def _keep(self, X, idx, codes):
        """Keep rows ``idx`` of ``X`` with their label codes, when ``keep_rows`` (under the lock)."""
        if self.keep_rows and len(idx):
            pending = self._pending_keep.get(threading.get_ident())
            if pending is not None and pending[0] is X:  # in predict: kept in row order when it is over
                pending[1].append(np.asarray(idx, dtype=np.int64))
                return
            limit = _DEFAULT_KEPT_BYTES if self.keep_rows is True else int(self.keep_rows)
            self._kept.add(X, idx, codes, limit)

    def _drop_kept_rows(self):
        """Stop keeping rows and forget those kept (a fit that switched ``keep_rows`` on, when it ends)."""
        with self._lock:
            self.keep_rows = False
            self._kept = _KeptRows()

    def queried_rows(self):
        """The rows this teacher answered, with their labels: every answer as training data.

        Kept while ``keep_rows`` is on: each distinct row answered by the
        model, or recalled from a ``cache_dir``, once. When they would take
        more memory than the limit, rows are thinned uniformly at random
        (each row answered is kept with the same probability, halved each
        time the limit is reached; seeded, so reproducible).

        Returns
        -------
        rows : ndarray or DataFrame of shape (n_kept, ...)
            In the form the model received them, float64 as float32. Rows
            of another shape or column layout than the first kept are left
            out.
        labels : ndarray of shape (n_kept,)
            The teacher's label of each row.

        Examples
        --------
        >>> import numpy as np
        >>> from db3learn import Teacher
        >>> teacher = Teacher(lambda X: (X[:, 0] > 0).astype(int), keep_rows=True)
        >>> _ = teacher.predict(np.array([[1.0], [-1.0], [1.0]]))
        >>> rows, labels = teacher.queried_rows()
        >>> rows.ravel(), labels
        (array([ 1., -1.], dtype=float32), array([1, 0]))
        """
        with self._lock:
            rows, codes = self._kept.get()
            labels = np.asarray(self._labels)[codes] if len(codes) else np.asarray(self._labels)[:0]
        return rows, labels

    def _ledger(self):
        """The persistent store's budget ledger, shared by processes and runs, or None."""
        store = self._store
        return store if store is not None and hasattr(store, "reserve") else None

    def _spent(self):
        """Rows spent against the budget: this teacher's, or the ledger's over every process and run."""
        ledger = self._ledger()
        return self.n_queries + self._reserved if ledger is None else ledger.spent()

    def _reserve(self, n):
        """Reserve up to ``n`` rows of the budget (under the lock); return how many fit."""
        ledger = self._ledger()
        if ledger is not None:
            return ledger.reserve(n, None if self.max_queries is None else int(self.max_queries))
        if self.max_queries is None:
            return n
        if self.__dict__.get("_budget_pid", os.getpid()) != os.getpid():
            raise TeacherError(
                f"This {type(self).__name__} has a query budget (max_queries={self.max_queries:,}) and is a copy "
                "made for another process (joblib or GridSearchCV with n_jobs and a process backend, or a "
                "pickle loaded elsewhere). Each copy would get a budget of its own, so the budget could not "
                "hold. Use the threading backend (with joblib.parallel_config(backend='threading'): ...), "
                "n_jobs=1, or a RemoteTeacher with cache_dir, whose budget is kept on disk and holds across "
                "processes. To spend the budget in this process anyway, set teacher.max_queries again here."
            )
        allowed = max(0, min(n, int(self.max_queries) - self.n_queries - self._reserved))
        self._reserved += allowed
        return allowed

    def _give_back(self, n):
        """Return ``n`` reserved rows that were not answered to the budget (under the lock)."""
        ledger = self._ledger()
        if ledger is not None:
            ledger.release()
        else:
            self._reserved -= n

    def _raise_budget(self, n_left, n_total):
        spent = self._spent()
        where = " through its cache_dir, by every run and process sharing it" if self._ledger() is not None else ""
        raise QueryBudgetExceeded(
            f"Query budget exhausted: max_queries={self.max_queries:,} rows, {spent:,} already "
            f"spent{where}, and {_plural(n_left, 'row')} of this call's {n_total:,} uncached rows are still "
            "unanswered. Every answer received so far is cached: raise the budget "
            "(teacher.max_queries = ...) and call again to resume without asking those rows twice.",
            max_queries=self.max_queries,
            n_queries=spent,
            n_requested=n_left,
        )

    def _fetch(self, X, idx, keys, n_before, lease=None):
        """The checked answer of the model for rows ``idx``, also written to the persistent store.

        Touches no in-memory state, so that subclasses may call it from
        worker threads; :meth:`_record` then files the answer. ``lease``
        names the budget reservation the rows were asked under (default:
        the calling thread's), which the store counts them off.
        """
        batch = take_rows(X, idx)
        try:
            answer = self._predict_batch(batch)
        except self._passthrough_errors:
            raise
        except Exception as exc:  # the teacher's own failure, whatever it is
            cached = (
                f"the answers to the {_plural(n_before, 'row')} asked before it are cached"
                if self.cache
                else "caching is off"
            )
            raise TeacherError(
                f"The teacher's predict raised {type(exc).__name__}: {exc} (on {_describe_batch(batch)}); {cached}. Fix the teacher or its input and call "
                "again to resume."
            ) from exc
        answer = self._check_answer(answer, len(idx))
        if keys is not None and self._store is not None:
            self._store.set_many([keys[i] for i in idx], answer, lease)  # counted off the lease as answered
        return answer

    def _record(self, idx, answer, keys, codes):
        """File the answer to rows ``idx`` in ``codes`` and the in-memory cache, and count the rows."""
        with self._lock:
            new = self._encode(answer)
            codes[idx] = new
            if keys is not None:
                self._answers.update(zip((keys[i] for i in idx), new.tolist()))
            self.n_queries += len(idx)
            if self._ledger() is None:  # a ledger moved them from its lease to answered when it stored them
                self._reserved -= len(idx)  # from reserved to spent

    def _file(self, idx, answer, keys, codes):
        """File an answer received from a worker, as :meth:`_fetch` and :meth:`_record` would."""
        if answer.dtype == object:  # python scalars from the worker's label table
            answer = np.asarray(answer.tolist())
        if keys is not None and self._store is not None:
            self._store.set_many([keys[i] for i in idx], answer)
        self._record(idx, answer, keys, codes)

    # -- copies that answer in joblib workers (see _parallel) -----------------
    def _fork(self, n_shares):
        """A copy that answers batches in a worker: no cache, no budget, no store, counters at 0.

        ``n_shares``: how many such copies work at once (remote teachers
        split their request rate and concurrency between them).
        """
        fork = copy.copy(self)
        fork._init_sync()
        fork.max_queries = None  # the caller reserved the rows within its budget
        fork.n_queries = fork.n_cache_hits = 0
        fork._answers, fork._labels, fork._codes, fork._memo = {}, [], {}, {}
        fork.keep_rows, fork._kept = False, _KeptRows()  # the caller keeps the rows it files
        fork._store = None  # the caller writes the answers to its store
        return fork

    def _fork_state(self):
        """What a fork learnt while answering, beyond the answers (see :meth:`_merge_fork_state`)."""
        return {}

    def _merge_fork_state(self, state):
        """Take over what a fork learnt while answering."""

    def _close_fork(self):
        """Release what a fork opened in its worker."""

    @staticmethod
    def _check_answer(answer, n):
        if hasattr(answer, "detach"):  # a torch tensor
            answer = answer.detach().cpu().numpy()
        listed = answer if isinstance(answer, (list, tuple)) else None
        answer = np.asarray(answer)
        if answer.ndim == 2 and answer.shape[1] == 1:
            answer = answer[:, 0]
        if answer.ndim != 1 or len(answer) != n:
            raise TeacherAnswerError(
                f"The teacher must return one label per row, an array of shape ({n},); it returned "
                f"an array of shape {answer.shape}. If it returns scores or probabilities, wrap it "
                "in a function that returns their argmax or its predict()."
            )
        if listed is not None and answer.dtype != object:  # numpy makes one type of several: [1, "a"] -> ["1", "a"]
            _check_one_type(np.asarray(listed, dtype=object).reshape(n), "a list")
        kind = _check_one_type(answer, "an object array")
        values = (
            np.asarray(answer.tolist(), dtype=np.float64) if answer.dtype == object and kind == "numbers" else answer
        )
        if values.dtype.kind == "f":
            finite = np.isfinite(values)
            if not finite.all():
                raise TeacherAnswerError(
                    f"The teacher returned non-finite labels ({values[~finite][:5]}); "
                    "it must return one class label per row."
                )
            fractional = values != np.round(values)
            if fractional.any():  # whole-number floats (1.0, 2.0) are labels, kept as floats
                raise TeacherAnswerError(
                    "The teacher must return one class label per row; it returned "
                    f"{_scores_not_labels(values[fractional], answer.dtype)}. "
                    "Return the model's predict(X) instead, or the class of highest score, "
                    "model.classes_[model.predict_proba(X).argmax(axis=1)]."
                )
        return answer

    def _encode(self, answer):
        _check_one_type(answer, "an object array")  # np.unique would fail on a mix with a TypeError
        values, inverse = np.unique(answer, return_inverse=True)
        new = values.tolist()
        if new and self._labels and _kind(new[0]) != _kind(self._labels[0]):  # [1, "1"] would be two classes
            before = self._labels[:3]
            raise TeacherAnswerError(
                f"The teacher answered {_kind_name(new)} ({_show(new[:3])}) in this batch but {_kind_name(before)} "
                f"({_show(before)}) before. Its labels must keep one type on every call, or one class would count as "
                "two (3 and '3'): make it return one type, e.g. np.asarray(model.predict(X)).astype(int) or "
                ".astype(str). The answers received before this batch are cached."
            )
        value_codes = np.empty(len(values), dtype=np.int64)
        for j, v in enumerate(new):
            code = self._codes.get(v)
            if code is None:
                code = self._codes[v] = len(self._labels)
                self._labels.append(v)
            value_codes[j] = code
        return value_codes[inverse.ravel()]

    def _check_known(self, labels):
        classes = self.classes_
        if classes is None:
            return
        unknown = ~np.isin(labels, classes)
        if unknown.any():
            outside, known = np.unique(labels[unknown])[:10].tolist(), classes.tolist()[:20]
            types = ""
            if known and _kind(outside[0]) != _kind(known[0]):  # e.g. "3" against classes [0, ..., 9]
                types = f" The teacher answers {_kind_name(outside)} but the classes are {_kind_name(known)}."
            raise TeacherAnswerError(
                f"The teacher returned labels {outside} outside its classes {known}.{types} Pass classes=[...] "
                "with every label it can return to the Teacher. The answers are cached."
            )


def _is_skorch_net(model):
    try:
        from skorch import NeuralNet
    except ImportError:  # pragma: no cover - skorch is a dependency
        return False
    return isinstance(model, NeuralNet)


class TorchTeacher(Teacher):
    """A ``torch.nn.Module`` classifier as a label-only teacher.

    The module receives float tensors on its own device, in batches of
    ``batch_size`` rows, under ``torch.inference_mode()`` and in eval mode;
    the label of a row is the argmax of the module's output.

    Parameters
    ----------
    module : torch.nn.Module
        Maps a float tensor of shape (batch, \\*input_shape) to scores of
        shape (batch, n_classes).
    input_shape : tuple of int or None, default=None
        Shape of one input, e.g. ``(1, 28, 28)``; rows are reshaped to it.
        ``None`` sends rows as they come.
    device : str, torch.device or None, default=None
        Where the module runs. ``None`` uses the device of its parameters
        (the CPU for a module without parameters).
    batch_size : int, default=1024
        Rows per forward pass.
    max_queries, cache, classes, keep_rows
        As in :class:`Teacher`. ``classes`` defaults to
        ``range(n_outputs)``, read from the first answer.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from db3learn import TorchTeacher
    >>> teacher = TorchTeacher(torch.nn.Linear(2, 3))
    >>> teacher.predict(np.zeros((4, 2), dtype=np.float32)).shape
    (4,)
    """

    def __init__(
        self,
        module,
        *,
        input_shape=None,
        device=None,
        batch_size=1024,
        max_queries=None,
        cache=True,
        classes=None,
        keep_rows=False,
    ):
        import torch

        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"TorchTeacher wraps a torch.nn.Module; got {type(module).__name__}.")
        super().__init__(
            module, batch_size=batch_size, max_queries=max_queries, cache=cache, classes=classes, keep_rows=keep_rows
        )
        self.input_shape = input_shape
        self.device = device
        self._n_outputs = None

    def _device(self):
        import torch

        if self.device is not None:
            return torch.device(self.device)
        param = next(self.model.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    def _predict_batch(self, X):
        import torch

        device = self._device()
        self.model.to(device).eval()
        x = torch.as_tensor(np.asarray(X, dtype=np.float32), device=device)
        if self.input_shape is not None:
            x = x.reshape(len(x), *self.input_shape)
        with torch.inference_mode():
            scores = self.model(x)
        if scores.ndim != 2:
            raise TeacherAnswerError(
                f"The module must return scores of shape (batch, n_classes); it returned shape {tuple(scores.shape)}."
            )
        self._n_outputs = scores.shape[1]
        return scores.argmax(dim=1).cpu().numpy()

    def _model_classes(self):
        return None if self._n_outputs is None else np.arange(self._n_outputs)

    def _fork_state(self):
        return {"n_outputs": self._n_outputs}

    def _merge_fork_state(self, state):
        if state["n_outputs"] is not None:
            self._n_outputs = state["n_outputs"]


def as_teacher(model):
    """Wrap ``model`` in the :class:`Teacher` that fits it.

    Parameters
    ----------
    model : Teacher, torch.nn.Module, object with ``predict``, or callable
        A ``Teacher`` is returned as it is; a ``torch.nn.Module`` becomes a
        :class:`TorchTeacher`; anything else a :class:`Teacher`.

    Returns
    -------
    teacher : Teacher

    Raises
    ------
    TypeError
        If ``model`` neither has ``predict`` nor is callable.
    """
    if isinstance(model, Teacher):
        return model
    try:
        import torch

        if isinstance(model, torch.nn.Module):
            return TorchTeacher(model)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return Teacher(model)


class _TeacherParamMixin:
    """For estimators with a ``teacher`` parameter.

    ``clone`` keeps the teacher as it is (a fitted scikit-learn teacher is
    never reset) and hands the clone the same :class:`Teacher` wrapper, so
    clones share one query counter, one answer cache and one distance cache:
    a grid search asks each row once.
    """

    def _get_teacher(self):
        if self.teacher is None:
            raise ValueError(
                f"{type(self).__name__} needs a teacher: pass teacher=<fitted classifier, callable or "
                "torch module>, or use it inside DB3Distiller, which passes its own."
            )
        held = getattr(self, "_teacher_wrapper", None)
        if held is None or held[0] is not self.teacher:
            held = (self.teacher, as_teacher(self.teacher))
            self._teacher_wrapper = held
        return held[1]

    def __sklearn_clone__(self):
        params = self.get_params(deep=False)
        teacher = params.pop("teacher")
        new = type(self)(teacher=teacher, **{k: clone(v, safe=False) for k, v in params.items()})
        for attr in ("_sklearn_output_config", "_metadata_request"):  # as sklearn's own clone does
            if hasattr(self, attr):
                setattr(new, attr, copy.deepcopy(getattr(self, attr)))
        if teacher is not None:
            new._teacher_wrapper = (teacher, self._get_teacher())
        return new
