"""ZeroShotTransferSet: a transfer set from the teacher alone (ZSDB3KD)."""

import math
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import validate_data
from tqdm.auto import tqdm

from ._input_space import InputSpace, is_frame
from ._parallel import query_jobs
from ._search import _bisect, _chunks, keyed_unit_vectors, success
from ._teachers import _TeacherParamMixin, encode_labels
from .exceptions import DB3Error

__all__ = ["ZeroShotTransferSet", "ClassCoverageWarning"]


def _smooth_noise(rng, n, shape):
    """Low-resolution uniform noise enlarged to ``shape`` (..., H, W), thresholded; rows in [0, 1]."""
    from scipy.ndimage import zoom

    height, width = shape[-2:]
    channels = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    out = np.empty((n, channels, height, width))
    res = rng.choice([4, 7, 14], size=n)
    for r in np.unique(res):
        rows = np.flatnonzero(res == r)
        r = int(min(r, height, width))
        low = rng.uniform(size=(len(rows), channels, r, r))
        up = zoom(low, (1, 1, height / r, width / r), order=1, grid_mode=False)
        out[rows] = up[:, :, :height, :width]
    threshold = rng.choice([0.0, 0.5, 0.7], size=(n, 1, 1, 1))
    out = np.where(out > threshold, out, 0.0)
    return np.clip(out, 0, 1).reshape(n, -1)


def _check_feature_range(feature_range, n_features):
    """``feature_range`` as (low, high) arrays of shape (n_features,); ValueError saying what is wrong."""
    expected = f"expected (low, high) with finite low < high, each a float or an array of shape ({n_features},)"
    if len(feature_range) != 2:
        raise ValueError(f"feature_range must be (low, high); got {len(feature_range)} items; {expected}.")
    bounds = []
    for name, given in zip(("low", "high"), feature_range):
        try:
            bound = np.asarray(given, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"feature_range's {name} must be numbers; got {given!r}; {expected}.") from None
        try:
            bound = np.broadcast_to(bound, (n_features,)).copy()
        except ValueError:
            raise ValueError(
                f"feature_range's {name} has shape {bound.shape}, which does not fit {n_features} features; {expected} "
                "(flatten an image-shaped range with np.ravel)."
            ) from None
        bad = ~np.isfinite(bound)
        if bad.any():
            if np.ndim(given) == 0:
                got = f"{name}={float(given)!r}"
            else:
                got = f"{name} holding {bound[bad][:3].tolist()} at features {np.flatnonzero(bad)[:5].tolist()}"
            raise ValueError(f"feature_range must be finite; got {got}; {expected}.")
        bounds.append(bound)
    low, high = bounds
    bad = low >= high
    if bad.any():
        first = np.flatnonzero(bad)[:5].tolist()
        raise ValueError(
            f"feature_range must have low < high for every feature; got low {low[first].tolist()} and high "
            f"{high[first].tolist()} at features {first}; {expected}."
        )
    return low, high


def _user_stacklevel():
    """The ``stacklevel`` of the first caller outside db3learn and scikit-learn (the user's line)."""
    import os
    import sys

    import sklearn

    inside = tuple(os.path.dirname(os.path.abspath(f)) + os.sep for f in (__file__, sklearn.__file__))
    frame, level = sys._getframe(1), 1  # the caller of this function is stacklevel 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(inside):
        frame, level = frame.f_back, level + 1
    return level


#: the smallest side of a square image whose layout ``input_shape=None`` infers (its smooth noise is drawn at up to
#: 14 x 14, so smaller images gain nothing: scikit-learn's 8 x 8 digits reached fewer 0s with it)
_MIN_INFERRED_SIDE = 16


def _inferred_image_shape(n_features, low, high):
    """``(channels, side, side)`` for a flat width of one or three square channels with one range, else None.

    784 -> (1, 28, 28), 1024 -> (1, 32, 32), 3072 -> (3, 32, 32); a table (one range per
    feature) or any other width -> None.
    """
    if np.ptp(low) > 0 or np.ptp(high) > 0:  # per-feature ranges: a table
        return None
    for channels in (1, 3):
        if n_features % channels:
            continue
        side = math.isqrt(n_features // channels)
        if side * side * channels == n_features and side >= _MIN_INFERRED_SIDE:
            return (channels, side, side)
    return None


class ClassCoverageWarning(UserWarning):
    """Some classes got fewer pseudo samples than asked for."""


class _BudgetSpent(DB3Error):
    """Internal: the generator's query budget cannot pay the next batch."""


class ZeroShotTransferSet(_TeacherParamMixin, BaseEstimator):
    """Pseudo samples generated from a label-only teacher alone (ZSDB3KD).

    With no data at all, db3learn builds the transfer set from the teacher's
    answers (Wang, ICML 2021, section 4): random inputs are drawn until the
    teacher assigns ``n_samples_per_class`` of them to each class; then,
    ``n_iter`` times, each sample's nearest decision boundary is found (an
    untargeted search along ``n_directions`` random directions, each step one
    large batch of queries) and the sample moves away from it by
    ``step_size``, halving its step whenever the move would change its
    teacher label. Samples far from every boundary act as class prototypes.

    Classes that noise never reaches (for an MNIST LeNet-5, 20,000 noise
    images include no 1, 4 or 9) are reached in two ways, within the budget:
    mixtures of pseudo samples of two other classes, and the points where
    the boundary searches cross into them or their random directions end
    in them. A class still short at the end is
    named in a :class:`ClassCoverageWarning`.

    It changes the number of samples, so it is not a ``Pipeline`` step: it
    offers ``fit`` and ``fit_resample``, as imbalanced-learn's samplers do,
    and :class:`~db3learn.DB3Distiller` takes it as ``transfer_set``.

    Parameters
    ----------
    teacher : object with ``predict``, callable, torch.nn.Module, Teacher or None, default=None
        ``None`` only inside :class:`~db3learn.DB3Distiller`.
    n_samples_per_class : int, default=200
        Pseudo samples wanted per class (the paper: 200 per round).
    n_iter : int, default=40
        Rounds of moving samples away from the boundaries (the paper: 40).
    step_size : float, default=0.5
        The paper's ``lambda``, as a fraction of the feature range's width
        (0.5 in pixel units for images in [0, 1]).
    n_directions : int, default=20
        Random directions per sample and round for the untargeted boundary
        search (the paper: 20).
    tol : float, default=1e-2
        Binary-search tolerance along each direction, relative to its length.
    max_queries : int or None, default=None
        Total query budget of :meth:`fit`; it stops early rather than
        exceed it (it never asks a batch it cannot pay). ``None``: bounded by
        ``n_iter`` and ``max_noise_draws``. Given to
        :class:`~db3learn.DB3Distiller` as ``transfer_set``, it bounds the
        distiller's whole fit: generation may spend four fifths, and the
        pseudo samples' mixtures (images) or boundary searches (tables) get
        the rest.
    max_noise_draws : int, default=20000
        Most random inputs drawn while seeding the classes.
    noise : {"auto", "paper"}, default="auto"
        ``"paper"``: the paper's noise only. ``"auto"``: for inputs with an
        ``input_shape`` of two spatial dimensions, half the draws are smooth,
        thresholded noise, which reaches classes the paper's noise misses.
    n_features : int or None, default=None
        Width of a flat input; needed when :meth:`fit` gets no ``X``.
    input_shape : tuple of int or None, default=None
        Shape of one input (e.g. ``(1, 28, 28)``); samples are flat rows of
        ``prod(input_shape)`` features either way. ``None`` with
        ``noise="auto"``: a width of one or three square channels of side
        16 or more with one ``feature_range`` for every feature is taken
        for an image (784 -> ``(1, 28, 28)``, 3072 -> ``(3, 32, 32)``), so
        that it gets smooth noise (without it, a LeNet-5 MNIST teacher's
        zero-shot student scored 45 % on real digits); ``input_shape_``
        says what was used.
    feature_range : None or (low, high), default=None
        Valid input range: floats, or arrays of shape (n_features,) for
        tabular inputs. ``None``: the range of ``X`` in :meth:`fit` (global
        minimum and maximum), else (0, 1).
    random_state : int, RandomState instance or None, default=None
    n_jobs : int or None, default=None
        Workers that answer the teacher's queries, through joblib, as in
        :class:`~db3learn.DecisionBoundarySoftLabeler`: the generator runs in
        the calling process, and each teacher call (a batch of noise, one
        step of the boundary searches, the moved samples) has its uncached
        rows, cut into the teacher's ``batch_size`` batches, answered in up
        to ``n_jobs`` chunks of consecutive batches. ``None`` means 1 unless
        in a :func:`joblib.parallel_config` context; ``-1`` uses every worker
        of the active backend (``backend="dask"`` with a
        ``dask.distributed.Client`` spreads them over a cluster). The pseudo
        samples, their labels and ``n_queries_`` are those of the serial run.
        ``max_queries`` is checked before each teacher call, as serially, so
        it holds exactly; a teacher error in a worker is raised as serially,
        after the answers of the other chunks are cached.
    verbose : int, default=0
        ``> 0`` shows a progress bar.

    Attributes
    ----------
    samples_ : ndarray of float32 of shape (n_pseudo, n_features), or DataFrame
        The pseudo samples; a DataFrame when :meth:`fit` was given one.
    labels_ : ndarray of shape (n_pseudo,)
        The teacher's label of each.
    classes_ : ndarray of shape (n_classes,)
        The classes the teacher is known to return.
    n_samples_per_class_ : dict
        Pseudo samples obtained per class.
    n_queries_ : int
        Teacher queries spent by :meth:`fit`.
    n_features_in_ : int
    feature_range_ : tuple of (ndarray, ndarray)
        (low, high) per feature (for a DataFrame, per numeric column, in
        its units).
    input_space_ : InputSpace or None
        The table's input space when :meth:`fit` was given a DataFrame.
    input_shape_ : tuple of int or None
        The image shape the noise took: ``input_shape``, the one inferred
        from the width (see ``input_shape``), or None (flat noise only).

    References
    ----------
    Z. Wang, "Zero-Shot Knowledge Distillation from a Decision-Based
    Black-Box Model", ICML 2021, arXiv:2106.03310.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_wine
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn.svm import SVC
    >>> from db3learn import ZeroShotTransferSet
    >>> X, y = load_wine(return_X_y=True)
    >>> teacher = make_pipeline(StandardScaler(), SVC()).fit(X, y)
    >>> gen = ZeroShotTransferSet(teacher, n_samples_per_class=20, n_iter=3,
    ...                           feature_range=(X.min(0), X.max(0)), random_state=0)
    >>> X_pseudo, y_pseudo = gen.fit_resample()
    >>> X_pseudo.shape, np.bincount(y_pseudo).tolist()
    ((60, 13), [20, 20, 20])
    """

    _parameter_constraints = {
        "teacher": [HasMethods(["predict"]), callable, None],
        "n_samples_per_class": [Interval(Integral, 1, None, closed="left")],
        "n_iter": [Interval(Integral, 0, None, closed="left")],
        "step_size": [Interval(Real, 0, None, closed="neither")],
        "n_directions": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, 1, closed="neither")],
        "max_queries": [Interval(Integral, 1, None, closed="left"), None],
        "max_noise_draws": [Interval(Integral, 1, None, closed="left")],
        "noise": [StrOptions({"auto", "paper"})],
        "n_features": [Interval(Integral, 1, None, closed="left"), None],
        "input_shape": [tuple, list, None],
        "feature_range": [tuple, list, None],
        "random_state": ["random_state"],
        "n_jobs": [Integral, None],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        teacher=None,
        *,
        n_samples_per_class=200,
        n_iter=40,
        step_size=0.5,
        n_directions=20,
        tol=1e-2,
        max_queries=None,
        max_noise_draws=20000,
        noise="auto",
        n_features=None,
        input_shape=None,
        feature_range=None,
        random_state=None,
        n_jobs=None,
        verbose=0,
    ):
        self.teacher = teacher
        self.n_samples_per_class = n_samples_per_class
        self.n_iter = n_iter
        self.step_size = step_size
        self.n_directions = n_directions
        self.tol = tol
        self.max_queries = max_queries
        self.max_noise_draws = max_noise_draws
        self.noise = noise
        self.n_features = n_features
        self.input_shape = input_shape
        self.feature_range = feature_range
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose

    # -- shape and range -----------------------------------------------------------
    def _resolve_shape_and_range(self, X):
        n_features = None
        if self.input_shape is not None:
            n_features = int(np.prod(self.input_shape))
        if self.n_features is not None:
            if n_features is not None and n_features != self.n_features:
                raise ValueError(
                    f"n_features={self.n_features} does not match input_shape={tuple(self.input_shape)} ({n_features} features)."
                )
            n_features = int(self.n_features)
        if n_features is None and self.feature_range is not None:
            widths = {np.size(v) for v in self.feature_range if np.ndim(v) == 1}
            if len(widths) == 1:  # per-feature ranges give the width
                n_features = widths.pop()
        if X is not None:
            X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=1)
            if n_features is not None and n_features != X.shape[1]:
                raise ValueError(
                    f"X has {X.shape[1]} features, but n_features/input_shape/feature_range say {n_features}."
                )
            n_features = X.shape[1]
        elif n_features is None:
            raise ValueError(
                "ZeroShotTransferSet needs the input shape: pass X (used only for its shape and value range), "
                "or n_features=..., input_shape=... or per-feature feature_range=(low_array, high_array)."
            )
        else:
            self.n_features_in_ = n_features
        if self.feature_range is not None:
            low, high = _check_feature_range(self.feature_range, n_features)
        elif X is not None:
            low, high = np.full(n_features, float(X.min())), np.full(n_features, float(X.max()))
        else:
            low, high = np.zeros(n_features), np.ones(n_features)
        if np.any(low >= high):
            raise ValueError("feature_range must have low < high for every feature.")
        return n_features, low, high

    def _table_space(self, X):
        """The :class:`~db3learn.InputSpace` of a DataFrame ``X``, which gives the pseudo rows' format."""
        given = {"n_features": self.n_features, "input_shape": self.input_shape, "feature_range": self.feature_range}
        clash = [name for name, value in given.items() if value is not None]
        if clash:
            raise ValueError(
                f"ZeroShotTransferSet got a DataFrame, whose columns, ranges and categories define the pseudo rows, "
                f"and {', '.join(clash)}; leave {', '.join(clash)} out (or give X as a float array)."
            )
        space = InputSpace().fit(X)
        self.input_space_ = space
        self.n_features_in_ = space.n_features_in_
        if hasattr(space, "feature_names_in_"):
            self.feature_names_in_ = space.feature_names_in_
        return space

    # -- fitting -------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X=None, y=None):
        """Generate the pseudo samples.

        Parameters
        ----------
        X : None, array-like or DataFrame of shape (n_samples, n_features), default=None
            Used only for its number of features and value range. A pandas
            DataFrame (numeric, bool, category and string columns) gives
            the format of the pseudo rows: they are a DataFrame with its
            columns and dtypes, each value within its column's observed
            range (whole numbers in integer columns) or one of its observed
            categories, generated in the standardised, one-hot space of
            :class:`~db3learn.InputSpace` (the table's distances).
        y : None
            Ignored.

        Returns
        -------
        self : ZeroShotTransferSet

        Raises
        ------
        ValueError
            If neither ``X`` nor ``n_features``/``input_shape`` is given;
            if ``feature_range`` is not (low, high) with finite low < high,
            each a float or an array of shape (n_features,), or the range of
            ``X`` is empty; or if the teacher answered one class only to
            every row asked (the message gives the queries spent; the
            answers stay cached in the teacher).
        TeacherError, TeacherAnswerError, QueryBudgetExceeded
            From the teacher (its own budget, not ``max_queries``, which
            stops the generation instead).

        Warns
        -----
        ClassCoverageWarning
            Naming the classes left short and how many samples each got.
        """
        if is_frame(X):  # a table: pseudo rows with X's columns, dtypes, ranges and categories
            space = self._table_space(X)
            self.input_shape_ = None  # a table's rows: no image layout
            n_features, low, high = space.n_features_out_, space.z_low_, space.z_high_
            self.feature_range_ = (space.low_, space.high_)

            def to_inputs(unit):  # the unit box -> the table's search space -> valid rows, as a DataFrame
                return space.inverse_transform(low + np.clip(unit, 0.0, 1.0) * (high - low))

        else:
            self.input_space_ = None
            n_features, low, high = self._resolve_shape_and_range(X)
            self.feature_range_ = (low, high)
            if self.input_shape is not None:
                self.input_shape_ = tuple(int(v) for v in self.input_shape)
            else:
                self.input_shape_ = _inferred_image_shape(n_features, low, high) if self.noise == "auto" else None

            def to_inputs(unit):
                return (low + np.clip(unit, 0.0, 1.0) * (high - low)).astype(np.float32)

        teacher = self._get_teacher()
        rng = check_random_state(self.random_state)
        q0 = teacher.n_queries
        budget = math.inf if self.max_queries is None else int(self.max_queries)

        answered, n_asked = set(), 0  # classes the teacher answered (two are enough), rows asked

        def ask(unit):
            """The teacher's labels of points given in the unit box, never spending past ``max_queries``."""
            nonlocal n_asked
            if teacher.n_queries - q0 + len(unit) > budget:
                raise _BudgetSpent
            labels = teacher.predict(to_inputs(unit))
            n_asked += len(unit)
            if len(answered) < 2:
                answered.update(np.unique(labels).tolist())
            return labels

        # the search runs in the unit box, so that every feature counts alike whatever its units
        zeros, ones = np.zeros(n_features), np.ones(n_features)
        with (
            query_jobs(self.n_jobs),
            tqdm(
                total=self.n_iter + 1,
                desc="zero-shot transfer set",
                unit="round",
                disable=not self.verbose,
                leave=False,
            ) as bar,
        ):
            samples, labels = self._seed(ask, rng, n_features)
            bar.update()
            samples, labels = self._move_away(ask, rng, samples, labels, zeros, ones, bar)
        if len(answered) == 1:
            raise ValueError(
                f"ZeroShotTransferSet: the teacher answered class {answered.pop()!r} to all {n_asked:,} rows asked "
                f"({teacher.n_queries - q0:,} queries), so the pseudo samples hold only one class; a student needs at "
                "least two classes to learn from. The answers stay cached in the teacher. If it has other classes, the "
                "noise did not reach them: give the teacher's real input range as feature_range, and its classes "
                "(Teacher(model, classes=[...])) so that noise is drawn until they are reached, up to max_noise_draws."
            )
        self.samples_ = to_inputs(samples)
        self.labels_ = labels
        known = teacher.classes_
        self.classes_ = np.unique(labels) if known is None else np.asarray(known)
        counts = {c: int(np.sum(labels == c)) for c in self.classes_.tolist()}
        self.n_samples_per_class_ = counts
        self.n_queries_ = teacher.n_queries - q0
        short = {c: n for c, n in counts.items() if n < self.n_samples_per_class}
        if short:
            fix = "Raise max_queries or max_noise_draws, or give the teacher's input range (feature_range) exactly"
            if self.input_shape_ is None and self.input_space_ is None:
                fix += (
                    "; if the inputs are images, give input_shape=(channels, height, width) (with noise='auto', the "
                    "default): their smooth noise reaches classes that flat noise misses"
                )
            warnings.warn(
                f"ZeroShotTransferSet wanted {self.n_samples_per_class} pseudo samples per class but got "
                f"{', '.join(f'{n} of class {c!r}' for c, n in short.items())} after {self.n_queries_:,} queries. "
                f"{fix}.",
                ClassCoverageWarning,
                stacklevel=_user_stacklevel(),
            )
        return self

    def _noise(self, rng, n, n_features):
        """Random inputs in the unit box: the paper's noise, and for images also smooth noise.

        The paper's: clip((U + 0.2) s1 + N(0, 1) s2, 0, 1). With ``noise="auto"`` and an
        ``input_shape`` with two spatial dimensions, half the draws are smooth instead:
        uniform noise at 4x4, 7x7 or 14x14, bilinearly enlarged, with everything below a
        random threshold (none, 0.5 or 0.7) set to 0 (the shape is ``input_shape_``: given or
        inferred). For a LeNet-5 MNIST teacher, 5,000 such images reach every class (the
        rarest, 9, about 1 % of the time), while 20,000 of the paper's reach no 1, 4 or 9.
        """
        shape = self.input_shape_
        spatial = shape is not None and len(shape) >= 2 and min(shape[-2:]) >= 4
        n_smooth = n // 2 if (self.noise == "auto" and spatial) else 0
        n_paper = n - n_smooth
        s1, s2 = rng.uniform(size=(n_paper, 1)), rng.uniform(size=(n_paper, 1))
        paper = np.clip(
            (rng.uniform(size=(n_paper, n_features)) + 0.2) * s1 + rng.standard_normal((n_paper, n_features)) * s2, 0, 1
        )
        if n_smooth == 0:
            return paper
        return np.vstack([paper, _smooth_noise(rng, n_smooth, shape)])

    def _seed(self, ask, rng, n_features):
        """Noise until every class has its samples; then mixtures of two classes for the classes still short."""
        want = self.n_samples_per_class
        kept_x, kept_y = [], []
        counts = {}
        batch = min(4096, max(256, 4 * want))
        drawn = 0

        def keep(points, answers):
            for c in np.unique(answers).tolist():
                have = counts.get(c, 0)
                take = np.flatnonzero(answers == c)[: max(0, want - have)]
                if len(take):
                    kept_x.append(points[take])
                    kept_y.append(answers[take])
                    counts[c] = have + len(take)

        def short_classes():
            classes = self._known_classes(counts)
            return [c for c in classes if counts.get(c, 0) < want]

        try:
            while drawn < self.max_noise_draws and (not counts or short_classes()):
                n = min(batch, self.max_noise_draws - drawn)
                points = self._noise(rng, n, n_features)
                keep(points, ask(points))
                drawn += n
            for _ in range(8):  # mixtures of two classes reach classes between them
                short = short_classes()
                if not short or len(counts) < 2:
                    break
                X_all, y_all = np.vstack(kept_x), np.concatenate(kept_y)
                n = batch
                a, b = rng.randint(len(X_all), size=n), rng.randint(len(X_all), size=n)
                differ = y_all[a] != y_all[b]
                a, b = a[differ], b[differ]
                lam = rng.uniform(0.2, 0.8, size=(len(a), 1))
                points = lam * X_all[a] + (1 - lam) * X_all[b]
                answers = ask(points)
                fresh = np.isin(answers, short)
                keep(points[fresh], answers[fresh])
        except _BudgetSpent:
            pass
        if not kept_x:
            return np.empty((0, n_features)), np.empty(0)
        return np.vstack(kept_x), np.concatenate(kept_y)

    def _known_classes(self, counts):
        classes = self._get_teacher().classes_
        return list(counts) if classes is None else np.asarray(classes).tolist()

    def _move_away(self, ask, rng, X, labels, low, high, bar):
        """n_iter rounds: find each sample's nearest boundary and step away from it.

        A boundary search that crosses into a class still short of samples,
        or a random direction whose far end lies in one, hands that class
        the point as a new sample (its answer is already paid for).
        """
        if len(X) == 0:
            return X, labels
        step = np.full(len(X), float(self.step_size))
        seed = int(rng.randint(2**31 - 1))
        for it in range(self.n_iter):
            try:
                y = self._codes(labels)
                direction, (found, found_labels) = self._nearest_boundary(ask, X, y, low, high, seed + it)
                moved = np.clip(X - step[:, None] * direction, low, high)
                answers = ask(moved)
                same = answers == labels
                X = np.where(same[:, None], moved, X)
                step[~same] /= 2.0
                keep = self._adopt(found_labels, labels)
                X, labels = np.vstack([X, found[keep]]), np.concatenate([labels, found_labels[keep]])
                step = np.concatenate([step, np.full(len(keep), float(self.step_size))])
            except _BudgetSpent:
                break
            bar.update()
        return X, labels

    def _adopt(self, found_labels, labels):
        """Indices of the found points that go to classes still short of samples."""
        want = self.n_samples_per_class
        values, counts = np.unique(labels, return_counts=True)
        have = dict(zip(values.tolist(), counts.tolist()))
        keep = []
        for c in np.unique(found_labels).tolist():
            room = want - have.get(c, 0)
            if room > 0:
                keep.extend(np.flatnonzero(found_labels == c)[:room].tolist())
        return np.asarray(keep, dtype=np.int64)

    def _codes(self, labels):
        self._label_values, codes = np.unique(labels, return_inverse=True)
        return codes

    def _nearest_boundary(self, ask, X, y, low, high, counter):
        """Untargeted BD along random directions: unit direction to the nearest boundary, and crossing points.

        Each direction is followed along the clipped path ``clip(x + t L theta)``,
        ``t`` in [0, 1], with ``L`` the box's diagonal, so that it stays inside
        the box even from a sample with saturated features; the distance of a
        point on it is its real distance to ``x``.
        """
        n, n_features = X.shape
        k = self.n_directions
        theta = keyed_unit_vectors(np.arange(n, dtype=np.uint64), counter, k, n_features, np.float64).reshape(
            n * k, n_features
        )
        theta *= float(np.linalg.norm(high - low))
        sample = np.repeat(np.arange(n), k)
        origin = X[sample]

        def path(p, t):
            return np.clip(origin[p] + t[:, None] * theta[p], low, high)

        own_labels = self._label_values[y]
        every = np.arange(len(sample))
        end_labels = np.concatenate(
            [ask(path(every[sl], np.ones(len(every[sl])))) for sl in _chunks(len(every), 16384)]
        )
        pairs = np.flatnonzero(end_labels != own_labels[sample])
        direction = np.zeros_like(X)
        # far ends are candidates for classes still short of samples: their answers are paid for
        candidates = (path(pairs, np.ones(len(pairs))), end_labels[pairs])
        if len(pairs) == 0:
            return direction, candidates
        lo, hi = np.zeros(len(pairs)), np.ones(len(pairs))
        group = sample[pairs]

        def distance(idx, t):
            return np.linalg.norm(path(pairs[idx], t) - origin[pairs[idx]], axis=1)

        def ask_pairs(idx, t):
            codes = encode_labels(self._label_values, ask(path(pairs[idx], t)))
            return success(codes, np.full(len(idx), -1), y[sample[pairs[idx]]])

        def select(idx):  # a direction whose bracket starts beyond the best found cannot win
            best = np.full(n, np.inf)
            every = np.arange(len(pairs))
            np.minimum.at(best, group, distance(every, hi))
            return idx[distance(idx, lo[idx]) < best[group[idx]]]

        steps = max(1, math.ceil(math.log2(1.0 / self.tol)))
        _bisect(ask_pairs, lo, hi, steps, tol=self.tol, select=select)
        found = path(pairs, hi)
        dist = np.linalg.norm(found - origin[pairs], axis=1)
        order = np.lexsort((dist, group))
        first = np.ones(len(order), dtype=bool)
        first[1:] = group[order][1:] != group[order][:-1]
        best = order[first]
        step = found[best] - origin[pairs[best]]
        direction[group[best]] = step / np.maximum(np.linalg.norm(step, axis=1, keepdims=True), 1e-12)
        crossing_labels = ask(found[best])  # answered during the search: cached
        return direction, (np.vstack([found[best], candidates[0]]), np.concatenate([crossing_labels, candidates[1]]))

    def fit_resample(self, X=None, y=None):
        """Generate the pseudo samples and return them with the teacher's labels.

        Parameters
        ----------
        X : None, array-like or DataFrame of shape (n_samples, n_features), default=None
            Used only for its number of features and value range. A pandas
            DataFrame (numeric, bool, category and string columns) gives
            the format of the pseudo rows: they are a DataFrame with its
            columns and dtypes, each value within its column's observed
            range (whole numbers in integer columns) or one of its observed
            categories, generated in the standardised, one-hot space of
            :class:`~db3learn.InputSpace` (the table's distances).
        y : None
            Ignored.

        Returns
        -------
        X_pseudo : ndarray of float32 of shape (n_pseudo, n_features), or DataFrame
            A DataFrame in the format of ``X`` when ``X`` is one.
        y_teacher : ndarray of shape (n_pseudo,)

        Raises
        ------
        ValueError, TeacherError, TeacherAnswerError, QueryBudgetExceeded
            As :meth:`fit`.
        """
        self.fit(X, y)
        return self.samples_, self.labels_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags
