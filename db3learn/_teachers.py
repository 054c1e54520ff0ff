"""Teachers: one wrapper around anything that answers with labels.

Every estimator of db3learn talks to its teacher through a :class:`Teacher`:
it counts the rows asked (queries), enforces an optional query budget, sends
batches of a fixed size, caches each row's answer so that no row is asked
twice, and checks that the answers are labels, one per row.
"""

import copy
import hashlib
import numbers

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

    salt = hashlib.blake2b(repr([(str(c), str(t)) for c, t in zip(X.columns, X.dtypes)]).encode(), digest_size=8).digest()
    a = pd.util.hash_pandas_object(X, index=False).to_numpy()
    b = pd.util.hash_pandas_object(X, index=False, hash_key="db3learn-rowkey2").to_numpy()
    a = a ^ np.frombuffer(salt, dtype=np.uint64)[0]
    both = np.column_stack([a, b]).astype(np.uint64)
    return [row.tobytes() for row in both]


def _describe_batch(batch):
    if is_frame(batch):
        return f"a DataFrame of shape {batch.shape}"
    return f"a batch of shape {batch.shape}, dtype {batch.dtype}"


class Teacher:
    """A label-only teacher: counts, budgets, batches and caches its queries.

    Wraps any object that maps a batch of inputs to one label per row: a
    fitted scikit-learn classifier or :class:`~sklearn.pipeline.Pipeline`,
    a skorch net, or a plain callable ``f(X) -> labels``. Every estimator of
    db3learn wraps what it is given in a ``Teacher`` (see :func:`as_teacher`);
    wrap it yourself to set a query budget or a batch size, or to share one
    cache between several estimators.

    One **query** is one row sent to the wrapped model. Rows whose answer is
    cached cost nothing: the cache is keyed by the row's bytes (its dtype and
    shape included), so a row is never asked twice while the cache is on.

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
        Query budget: the most rows the wrapped model may receive over the
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

    Attributes
    ----------
    n_queries : int
        Rows the wrapped model has received so far.
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
        From :meth:`predict`, when the wrapped model raises.
    TeacherAnswerError
        From :meth:`predict`, when the answer is not one label per row, or is
        a label outside ``classes``.

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

    _store = None  # a persistent answer store: get_many(keys) -> labels or None, set_many(keys, labels)
    _passthrough_errors = ()  # errors of _predict_batch raised as they are, not wrapped in TeacherError

    def __init__(self, model, *, batch_size=4096, max_queries=None, cache=True, classes=None):
        if isinstance(model, Teacher):
            raise TypeError("model is already a Teacher; pass it directly instead of wrapping it twice.")
        if not (hasattr(model, "predict") or callable(model)):
            raise TypeError(
                "A teacher must have a predict(X) method or be callable as f(X) -> labels; "
                f"got {type(model).__name__}. Wrap your model in a function that returns one label per row."
            )
        if not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        if max_queries is not None and (not isinstance(max_queries, numbers.Integral) or max_queries < 0):
            raise ValueError(f"max_queries must be a non-negative integer or None, got {max_queries!r}.")
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
        QueryBudgetExceeded, TeacherError, TeacherAnswerError
            See the class docstring. Rows answered before the error stay
            cached.
        """
        if not is_frame(X):
            X = np.asarray(X)
        if X.ndim < 1:
            raise ValueError(f"Expected a batch of rows, got a scalar {X!r}.")
        n = len(X)
        if n == 0:
            return np.asarray(self._labels)[:0] if self._labels else np.empty(0)
        codes = np.full(n, -1, dtype=np.int64)
        if self.cache:
            keys = _row_keys(X)
            get = self._answers.get
            for i, k in enumerate(keys):
                c = get(k)
                if c is not None:
                    codes[i] = c
            missing = np.flatnonzero(codes < 0)
            if len(missing) and self._store is not None:
                self._recall(keys, missing, codes)
                missing = np.flatnonzero(codes < 0)
            # a row repeated inside the call is asked once
            first = {}
            for i in missing:
                first.setdefault(keys[i], i)
            to_ask = np.fromiter(first.values(), dtype=np.int64, count=len(first))
            self.n_cache_hits += n - len(to_ask)
        else:
            keys = None
            to_ask = np.arange(n)
        if len(to_ask):
            self._ask(X, to_ask, keys, codes)
            if self.cache:
                dup = codes < 0
                if dup.any():
                    codes[dup] = [self._answers[keys[i]] for i in np.flatnonzero(dup)]
        labels = np.asarray(self._labels)[codes]
        self._check_known(labels)
        return labels

    def _recall(self, keys, missing, codes):
        """Fill ``codes[missing]`` from the persistent store, where it has the answer."""
        stored = self._store.get_many([keys[i] for i in missing])
        found = [j for j, label in enumerate(stored) if label is not None]
        if found:
            idx = missing[found]
            new = self._encode(np.asarray([stored[j] for j in found]))
            codes[idx] = new
            self._answers.update(zip((keys[i] for i in idx), new.tolist()))

    def _ask(self, X, to_ask, keys, codes):
        """Ask the model for rows ``to_ask``; fill ``codes``, the caches, the counter.

        The rows that fit into the budget are asked first, in batches of
        ``batch_size``; then, if some rows did not fit, the budget error.
        """
        n_total = len(to_ask)
        allowed = self._allowed(n_total)
        asked = to_ask[:allowed]
        batches = [asked[start : start + self.batch_size] for start in range(0, allowed, self.batch_size)]
        if not _parallel.answer_in_chunks(self, X, batches, keys, codes):  # n_jobs: see _parallel
            self._ask_batches(X, batches, keys, codes)
        if allowed < n_total:
            self._raise_budget(n_total - allowed, n_total)

    def _ask_batches(self, X, batches, keys, codes, n_before=0):
        """Ask each batch of row indices in turn (subclasses may ask several at once).

        ``n_before``: rows of the same call asked before these (for messages).
        """
        n_asked = n_before
        for idx in batches:
            self.n_queries += len(idx)
            answer = self._fetch(X, idx, keys, n_asked)
            self._record(idx, answer, keys, codes)
            n_asked += len(idx)

    def _allowed(self, n):
        if self.max_queries is None:
            return n
        return max(0, min(n, int(self.max_queries) - self.n_queries))

    def _raise_budget(self, n_left, n_total):
        raise QueryBudgetExceeded(
            f"Query budget exhausted: max_queries={self.max_queries:,} rows, {self.n_queries:,} already "
            f"spent, and {_plural(n_left, 'row')} of this call's {n_total:,} uncached rows are still "
            "unanswered. Every answer received so far is cached: raise the budget "
            "(teacher.max_queries = ...) and call again to resume without asking those rows twice.",
            max_queries=self.max_queries,
            n_queries=self.n_queries,
            n_requested=n_left,
        )

    def _fetch(self, X, idx, keys, n_before):
        """The checked answer of the model for rows ``idx``, also written to the persistent store.

        Touches no in-memory state, so that subclasses may call it from
        worker threads; :meth:`_record` then files the answer.
        """
        batch = take_rows(X, idx)
        try:
            answer = self._predict_batch(batch)
        except self._passthrough_errors:
            raise
        except Exception as exc:  # the teacher's own failure, whatever it is
            cached = f"the answers to the {_plural(n_before, 'row')} asked before it are cached" if self.cache else "caching is off"
            raise TeacherError(
                f"The teacher's predict raised {type(exc).__name__}: {exc} (on {_describe_batch(batch)}); {cached}. Fix the teacher or its input and call "
                "again to resume."
            ) from exc
        answer = self._check_answer(answer, len(idx))
        if keys is not None and self._store is not None:
            self._store.set_many([keys[i] for i in idx], answer)
        return answer

    def _record(self, idx, answer, keys, codes):
        """File the answer to rows ``idx`` in ``codes`` and the in-memory cache."""
        new = self._encode(answer)
        codes[idx] = new
        if keys is not None:
            self._answers.update(zip((keys[i] for i in idx), new.tolist()))

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
        fork.max_queries = None  # the caller reserved the rows within its budget
        fork.n_queries = fork.n_cache_hits = 0
        fork._answers, fork._labels, fork._codes, fork._memo = {}, [], {}, {}
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
        answer = np.asarray(answer)
        if answer.ndim == 2 and answer.shape[1] == 1:
            answer = answer[:, 0]
        if answer.ndim != 1 or len(answer) != n:
            raise TeacherAnswerError(
                f"The teacher must return one label per row, an array of shape ({n},); it returned "
                f"an array of shape {answer.shape}. If it returns scores or probabilities, wrap it "
                "in a function that returns their argmax or its predict()."
            )
        if answer.dtype.kind == "f" and not np.isfinite(answer).all():
            raise TeacherAnswerError(
                f"The teacher returned non-finite labels ({answer[~np.isfinite(answer)][:5]}); "
                "it must return one class label per row."
            )
        return answer

    def _encode(self, answer):
        values, inverse = np.unique(answer, return_inverse=True)
        value_codes = np.empty(len(values), dtype=np.int64)
        for j, v in enumerate(values.tolist()):
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
            raise TeacherAnswerError(
                f"The teacher returned labels {np.unique(labels[unknown])[:10].tolist()} outside its "
                f"classes {classes.tolist()[:20]}. Pass classes=[...] with every label it can return "
                "to the Teacher. The answers are cached."
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
    max_queries, cache, classes
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

    def __init__(self, module, *, input_shape=None, device=None, batch_size=1024, max_queries=None, cache=True, classes=None):
        import torch

        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"TorchTeacher wraps a torch.nn.Module; got {type(module).__name__}.")
        super().__init__(module, batch_size=batch_size, max_queries=max_queries, cache=cache, classes=classes)
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
