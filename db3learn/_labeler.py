"""DecisionBoundarySoftLabeler: any ``predict`` -> soft labels."""

import hashlib
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin, _fit_context, clone
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from ._input_space import InputSpace, check_input
from ._parallel import query_jobs
from ._search import (
    binary_search_distances,
    hopskipjump_distances,
    plane_distances,
    sample_distances,
    select_references,
    sign_opt_distances,
)
from ._soft_labels import DISTANCE_TO_LOGIT, distances_to_logits, soft_labels
from ._teachers import _row_keys, _TeacherParamMixin, encode_labels
from .exceptions import TeacherAnswerError

__all__ = ["DecisionBoundarySoftLabeler"]

_DTYPES = [np.float64, np.float32]
_REFINING = ("mbd", "hsj")  # methods that refine BD's best direction
_OFF_SEGMENT = _REFINING + ("plane",)  # methods whose queries leave the segments between data points
_POINTING = ("bd",) + _REFINING  # methods that know the point they found on each boundary
#: BD's tolerance when ``tol=None``: "plane" needs every direction's crossing, but only coarsely.
_DEFAULT_TOL = {"plane": 1.0 / 64}
#: Query budget per (sample, class) pair of the refining searches when none is given.
_DEFAULT_PAIR_BUDGET = {"mbd": 20000, "hsj": 1000}


class DecisionBoundarySoftLabeler(_TeacherParamMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Soft labels from a label-only teacher's decision boundaries (DB3KD).

    The distance from a sample to each of the teacher's decision boundaries
    tells how confident the teacher is: a sample far from class ``j``'s
    region is robust against ``j``. :meth:`~db3learn.DecisionBoundarySoftLabeler.boundary_distances` estimates
    those distances with teacher queries alone; :meth:`transform` turns them
    into soft labels ``softmax(z / temperature)``, with logits ``z`` given by
    ``distance_to_logit``.

    Parameters
    ----------
    teacher : object with ``predict``, callable, torch.nn.Module, Teacher or None, default=None
        The teacher, wrapped by :func:`~db3learn.as_teacher`. ``None`` only
        inside :class:`~db3learn.DB3Distiller`, which passes its own.
    method : {"bd", "sd", "mbd", "hsj", "plane"}, default="bd"
        The distance estimator. The paper's three (Wang, ICML 2021,
        section 3.2):
        ``"sd"``, sample distance: distance to the nearest reference of each
        class; no queries beyond labelling the references.
        ``"bd"``, boundary distance: a binary search toward each of
        ``n_directions`` references of the class, the minimum over them;
        at most ``n_directions x ceil(log2(1/tol))`` queries per
        (sample, class), fewer since directions that can no longer win stop.
        ``"mbd"``, minimal boundary distance: BD, then Sign-OPT (Cheng et
        al., ICLR 2020) on BD's best direction, with the paper's defaults
        (200 queries per gradient estimate, ``beta = 0.001``,
        ``alpha = 0.2``) and up to 20,000 queries per (sample, class).
        Faster: ``"hsj"``: BD, then a batched targeted HopSkipJump walk
        along the boundary (Chen et al., IEEE S&P 2020), which gets closer
        to the minimal distance than Sign-OPT at budgets of tens to
        hundreds of queries per (sample, class); up to 1,000 by default.
        ``"plane"`` (db3learn's): BD without its early stop, so that every
        direction's crossing of the boundary is known (to ``tol``, 1/64 by
        default: 6 queries each); the hyperplane through those boundary
        points gives the boundary's normal at no cost, and one search along
        it (12 queries) finds a closer boundary point for most pairs (the
        planar-boundary assumption of the geometric attacks qFool, Liu et
        al., ICCV 2019, and GeoDA, Rahmati et al., CVPR 2020, with the
        normal fitted to boundary points BD has already paid for instead of
        random probes). At most ``n_directions x ceil(log2(1/tol)) + 12``
        queries per (sample, class): 72 with the defaults, 648 per MNIST
        digit. A class with fewer than two references gets BD alone.
        Its distances are the closest to exact of any method at 100 to 300
        queries per (sample, class) on a linear teacher
        (``benchmarks/distance_quality.py``).
        BD is the default: on MNIST (``benchmarks/mnist_queries.py --study
        method``), students trained on BD, plane, HSJ and MBD soft labels at
        1,000 queries per sample or fewer, and BD with 20 directions, were
        within seed noise of each other (10 seeds; every row closed 100 % or
        more of the copycat-to-white-box accuracy gap and 86 % to 90 % of
        the fidelity gap with the paper's loss; :class:`~db3learn.DB3Distiller`'s
        boundary term raises BD's to 95 %), and BD spent the fewest queries
        (about 390 per digit).
    n_directions : int, default=10
        ``K``: references searched toward per (sample, class) for ``"bd"``
        and ``"plane"`` (and BD's start of ``"mbd"`` and ``"hsj"``), and
        for ``"sd"`` with ``reference_selection="random"``.
    reference_selection : {"nearest", "random"}, default="nearest"
        ``"nearest"``: the ``K`` references of the class nearest to the
        sample, which give short first brackets and smaller distances for the
        same queries. ``"random"``: ``K`` references drawn at random per
        sample, as in the paper's reference code.
    tol : float or None, default=None
        BD's binary-search tolerance, relative to the distance to the
        reference: each direction takes at most ``ceil(log2(1/tol))``
        queries. ``None``: 1/64 (6 queries) for ``"plane"``, whose fit needs
        every direction's crossing but only coarsely, and 1e-3 (10 queries)
        for the other methods. The paper uses an absolute 1e-5, which costs
        about 20.
    feature_range : None, "per_feature" or (low, high), default=None
        Where queried inputs are clipped, in the units of ``X``, as
        :class:`~db3learn.InputSpace` takes it. ``None``: for homogeneous
        float data such as images, the global minimum and maximum of ``X`` in
        :meth:`fit`; for tables, each column's minimum and maximum;
        ``"per_feature"``: each feature's minimum and maximum in ``fit``;
        ``(low, high)``: floats or arrays of shape (n_features,).
    input_space : InputSpace or None, default=None
        How samples become points of the search space and points become
        valid teacher queries: column types, scale, ranges, categories.
        ``None``: ``InputSpace(feature_range=feature_range)``, which keeps
        images and other homogeneous float arrays in their own units and
        standardises the numeric columns of tables (one-hot encoding their
        categorical ones), so that **distances are in units of each
        column's standard deviation in the transfer set** (and 1 for a
        switched flag or category). Every query is a valid row in the
        format of ``X`` (a DataFrame with its columns and dtypes when ``X``
        is one). It is cloned and fitted on ``X`` in :meth:`fit`.
    temperature : float, default=1.0
        ``T`` of the soft labels ``softmax(z / T)``. With
        ``distance_to_logit="negative"`` it is a distance in the units of
        ``X``; the paper trains with ``T = 20`` on the ``"inverse"`` logits.
        Changing it never needs new queries: distances are cached.
    distance_to_logit : {"negative", "inverse"}, default="negative"
        How distances become logits, see
        :func:`~db3learn.distances_to_logits`. ``"inverse"`` is the paper's
        ``1/d``; ``"negative"`` (``z_j = -d_j``) gave students clearly
        higher fidelity on MNIST.
    max_queries_per_sample : int or None, default=None
        Query budget of the search per sample, over all its target classes
        and directions (the query that labels the sample itself is not
        counted), for every method; never exceeded. BD spends first, the
        directions that are currently nearest first; ``"mbd"`` and
        ``"hsj"`` share what is left equally among the sample's classes.
        ``None``: BD is bounded by ``tol`` only, MBD and HSJ by
        ``max_queries_per_pair``.
    max_queries_per_pair : int or None, default=None
        For ``"mbd"`` and ``"hsj"``: budget of the refining search per
        (sample, class) pair, after BD. ``None``: 20,000 for ``"mbd"`` (the
        paper's), 1,000 for ``"hsj"``.
    random_state : int, RandomState instance or None, default=None
        Seeds the references of ``reference_selection="random"`` and the
        random directions of ``"mbd"`` and ``"hsj"``. Both are drawn per
        (sample, class) from the seed and the sample's bytes, not from a
        shared stream, so a sample gets the same references and distances
        whether it is searched alone or in a batch. ``None`` and a
        ``RandomState`` instance act as the seed 0.
    n_jobs : int or None, default=None
        Workers that answer the teacher's queries, through joblib. The
        search itself stays in the calling process (vectorised numpy, each
        step needing the previous step's answers); what is spread out is
        the teacher's work. Each teacher call (labelling the references or
        the samples, one step of a search) first looks up its cache,
        removes repeated rows and reserves the rows that fit the teacher's
        ``max_queries``, exactly as serially; the rows left, cut into the
        teacher's ``batch_size`` batches, are grouped into up to ``n_jobs``
        chunks of consecutive batches, one per worker. A call of a single
        batch is answered in the calling process. ``None`` means 1 unless in
        a :func:`joblib.parallel_config` context; ``-1`` uses every worker
        of the active backend. The distances, soft labels, queries per
        sample and the teacher's ``n_queries`` are those of the serial run,
        whatever ``n_jobs`` and the backend: each model call receives the
        same batch as serially. ``max_queries_per_sample`` stays per
        sample, and the teacher's ``max_queries`` is never exceeded (rows
        are reserved before any chunk is sent). Each worker gets a copy of
        the teacher's model without its answer cache; a
        :class:`~db3learn.RemoteTeacher` gives each of the ``k`` chunks
        ``1/k`` of its ``max_requests_per_second`` and
        ``max_concurrency``, so ``n_jobs`` does not multiply the request
        rate. When the teacher raises in a worker, the other chunks finish,
        every answer received is cached (and written to a remote teacher's
        ``cache_dir``), and the first error in batch order is raised, the
        same :class:`~db3learn.exceptions.TeacherError` (or subclass) as
        serially. To spread the queries over a cluster, run under
        ``joblib.parallel_config(backend="dask")`` with a
        ``dask.distributed.Client`` (or Ray's joblib backend); the teacher
        must then pickle (a fitted scikit-learn model, a torch module, a
        :class:`~db3learn.RemoteTeacher`, a function importable on the
        workers).
    verbose : int, default=0
        ``> 0`` shows a progress bar of the search.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The teacher's labels: its ``classes_`` when known, else the labels it
        gave the references in :meth:`fit`. Columns of the outputs follow it.
    n_features_in_ : int
        Number of features seen in :meth:`fit`.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Names of the features seen in :meth:`fit`, when ``X`` had string
        column names.
    references_ : ndarray of shape (n_references, ``input_space_.n_features_out_``)
        The reference samples (the ``X`` of :meth:`fit`) in the search
        space (``X`` itself for images and other homogeneous arrays).
    reference_labels_ : ndarray of int of shape (n_references,)
        The teacher's class index of each reference (into ``classes_``).
    feature_range_ : tuple of (float or ndarray, float or ndarray)
        The (low, high) box of valid points in the search space.
    input_space_ : InputSpace
        The fitted input space: ``references_`` and every searched point
        live in its search space.
    n_queries_ : int
        Teacher queries spent in :meth:`fit` (labelling the references).

    See Also
    --------
    DB3Distiller : trains a student on these soft labels.
    distances_to_logits : the distance-to-logit mappings.

    Notes
    -----
    Distances are cached per input row (and per search setting) in the
    :class:`~db3learn.Teacher` wrapper, which clones share: transforming a
    row again, with any ``temperature``, or after refitting on other
    references, asks the teacher nothing. Each cached distance is an upper
    bound on the true boundary distance whatever references produced it.

    References
    ----------
    Z. Wang, "Zero-Shot Knowledge Distillation from a Decision-Based
    Black-Box Model", ICML 2021, arXiv:2106.03310.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from db3learn import DecisionBoundarySoftLabeler
    >>> X, y = load_iris(return_X_y=True)
    >>> teacher = LogisticRegression(max_iter=1000).fit(X, y)
    >>> labeler = DecisionBoundarySoftLabeler(teacher, n_directions=3).fit(X)
    >>> labeler.boundary_distances(X[:1]).round(2)  # in cm, the units of X
    array([[0.  , 1.6 , 3.79]])
    >>> labeler.transform(X[:1]).round(3)  # softmax(-d / 1.0)
    array([[0.816, 0.165, 0.018]])
    """

    _parameter_constraints = {
        "teacher": [HasMethods(["predict"]), callable, None],
        "method": [StrOptions({"plane", "bd", "sd", "mbd", "hsj"})],
        "n_directions": [Interval(Integral, 1, None, closed="left")],
        "reference_selection": [StrOptions({"nearest", "random"})],
        "tol": [Interval(Real, 0, 1, closed="neither"), None],
        "feature_range": [None, StrOptions({"per_feature"}), tuple, list],
        "input_space": [None, InputSpace],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "distance_to_logit": [StrOptions(set(DISTANCE_TO_LOGIT))],
        "max_queries_per_sample": [Interval(Integral, 1, None, closed="left"), None],
        "max_queries_per_pair": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
        "n_jobs": [Integral, None],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        teacher=None,
        *,
        method="bd",
        n_directions=10,
        reference_selection="nearest",
        tol=None,
        feature_range=None,
        input_space=None,
        temperature=1.0,
        distance_to_logit="negative",
        max_queries_per_sample=None,
        max_queries_per_pair=None,
        random_state=None,
        n_jobs=None,
        verbose=0,
    ):
        self.teacher = teacher
        self.method = method
        self.n_directions = n_directions
        self.reference_selection = reference_selection
        self.tol = tol
        self.feature_range = feature_range
        self.input_space = input_space
        self.temperature = temperature
        self.distance_to_logit = distance_to_logit
        self.max_queries_per_sample = max_queries_per_sample
        self.max_queries_per_pair = max_queries_per_pair
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Label the reference samples ``X`` with the teacher.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Reference samples; finite values.
        y : None
            Ignored: the teacher gives the labels.

        Returns
        -------
        self : DecisionBoundarySoftLabeler

        Raises
        ------
        ValueError
            If ``X`` is not 2-D, holds NaN or infinity, or ``feature_range``
            does not fit ``X``.
        QueryBudgetExceeded, TeacherError, TeacherAnswerError
            From the teacher; answers received so far stay cached.
        """
        X = check_input(self, X, reset=True)
        if self.input_space is not None and self.feature_range is not None:
            raise ValueError(
                "Give feature_range to the InputSpace, not beside it: got input_space=InputSpace(...) and "
                f"feature_range={self.feature_range!r}."
            )
        space = InputSpace(feature_range=self.feature_range) if self.input_space is None else clone(self.input_space)
        self.input_space_ = space.fit(X)
        X = space._to_z(X)
        teacher = self._get_teacher()
        q0 = teacher.n_queries
        with query_jobs(self.n_jobs):
            labels = self._teacher_labels(teacher, X)
        known = teacher.classes_
        self.classes_ = np.unique(labels) if known is None else np.asarray(known)
        self.reference_labels_ = self._encode(labels)
        self._check_known(labels, self.reference_labels_)
        self.references_ = X
        self._restricted = None
        self.feature_range_ = (space.z_low_, space.z_high_)
        self.n_queries_ = teacher.n_queries - q0
        return self

    def _restrict_references(self, rows):
        """Search toward the references ``rows`` only (DB3Distiller's soft-label check holds the others out)."""
        self.references_ = self.references_[rows]
        self.reference_labels_ = self.reference_labels_[rows]
        self._restricted = hashlib.blake2b(np.ascontiguousarray(self.references_).tobytes(), digest_size=16).digest()

    def _teacher_labels(self, teacher, Z):
        """The teacher's labels of points of the search space, asked as valid rows in the teacher's format."""
        return teacher.predict(self.input_space_.inverse_transform(Z))

    def _z(self, X):
        """``X`` checked against ``fit`` and mapped to the search space."""
        check_is_fitted(self)
        return self.input_space_._to_z(check_input(self, X, reset=False))

    def _encode(self, labels):
        """Class index of each label in ``classes_``, -1 for unknown labels."""
        return encode_labels(self.classes_, labels)

    def _check_known(self, labels, codes):
        if (codes < 0).any():
            raise TeacherAnswerError(
                f"The teacher labelled samples as {np.unique(labels[codes < 0])[:10].tolist()}, classes not "
                f"seen when the labeler was fit (classes_={self.classes_.tolist()[:20]}). Fit it on references "
                "that cover every class the teacher can return, or wrap the teacher in "
                "Teacher(model, classes=[...]). The answers are cached."
            )

    def _query(self, teacher):
        def query(points):
            return self._encode(self._teacher_labels(teacher, points))

        return query

    def _setting_key(self):
        rs = self.random_state if isinstance(self.random_state, Integral) else None
        key = [
            "DecisionBoundarySoftLabeler",
            self.method,
            self.n_directions,
            self.reference_selection,
            self._tol(),
            self.max_queries_per_sample,
            rs,
            tuple(self.classes_.tolist()),
        ]
        if self.method in _REFINING:
            key += [self.max_queries_per_pair]
        if self.method in _OFF_SEGMENT:  # only these step outside the segments between data points
            key += [np.asarray(v, dtype=np.float64).tobytes() for v in self.feature_range_]
        if not self.input_space_.identity_:  # distances are in its scale, points rounded to its rows
            key += [self.input_space_._fingerprint()]
        if self._restricted is not None:  # fewer references than rows: other distances
            key += [self._restricted]
        return tuple(key)

    def _tol(self):
        """BD's binary-search tolerance: ``tol``, or the method's default."""
        return _DEFAULT_TOL.get(self.method, 1e-3) if self.tol is None else float(self.tol)

    def boundary_distances(self, X, return_queries=False):
        """Estimated distance from each sample to each class's region.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        return_queries : bool, default=False
            Also return the teacher queries spent on each sample by this
            call (0 for a sample whose distances were cached).

        Returns
        -------
        distances : ndarray of float64 of shape (n_samples, n_classes)
            In the units of ``X``; 0 for the class the teacher gives the
            sample; ``inf`` for a class with no reference. Columns follow
            ``classes_``. Each is an upper bound on the true distance: a
            point at that distance was answered with that class (for
            ``"sd"``, the point is a reference).
        queries : ndarray of int64 of shape (n_samples,)
            Only with ``return_queries=True``. Queries of the search (the
            query that labels the sample itself is not counted).

        Raises
        ------
        ValueError
            If ``X`` has the wrong number of features or non-finite values.
        QueryBudgetExceeded, TeacherError, TeacherAnswerError
            From the teacher; answers received so far stay cached, and a new
            call asks only what is missing.
        """
        D, queries, _, _ = self._cached(X)
        return (D, queries) if return_queries else D

    def boundary_points(self, X):
        """The point the search found across each sample's nearest boundary.

        For each sample, the point nearest to it that the search confirmed
        in its nearest other class: the end of BD's final bracket (``t_hi``)
        on the direction that gave the distance, or, for ``"mbd"`` and
        ``"hsj"``, ``x + d theta`` on the refined direction (clipped to the
        feature range). It lies within the search's tolerance of the
        teacher's decision boundary, so it costs no queries beyond the
        distances'. :class:`~db3learn.DB3Distiller` uses these points to place the
        student's decision boundaries (its ``boundary_weight``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        points : ndarray or DataFrame of shape (n_samples, n_features)
            Valid rows in the teacher's format (see ``input_space``): the
            float dtype of ``X`` (float64 for integer input) for arrays kept
            in raw units, a DataFrame for a DataFrame.
        nearest : ndarray of int64 of shape (n_samples,)
            Index into ``classes_`` of the class each point was answered
            with (the sample's nearest other class); -1 where no other class
            was reached, or where ``max_queries_per_sample`` stopped the
            search before the point was within its tolerance of the boundary
            (such a sample gets its own row as its point).

        Raises
        ------
        ValueError
            If ``method`` is ``"sd"`` or ``"plane"`` (their distances do not
            come from a queried point on the boundary), or ``X`` is invalid.
        QueryBudgetExceeded, TeacherError, TeacherAnswerError
            As :meth:`~db3learn.DecisionBoundarySoftLabeler.boundary_distances`; its cached distances and answers
            are shared, so asking for both costs the queries of one search.

        Examples
        --------
        >>> from sklearn.datasets import load_iris
        >>> from sklearn.linear_model import LogisticRegression
        >>> from db3learn import DecisionBoundarySoftLabeler
        >>> X, y = load_iris(return_X_y=True)
        >>> lab = DecisionBoundarySoftLabeler(LogisticRegression(max_iter=500).fit(X, y), random_state=0).fit(X)
        >>> points, nearest = lab.boundary_points(X[:3])
        >>> points.shape, nearest.tolist()
        ((3, 4), [1, 1, 1])
        >>> bool((lab.teacher.predict(points) == lab.classes_[nearest]).all())
        True
        """
        points, nearest = self._boundary_points(X)
        return self.input_space_.inverse_transform(points), nearest

    def _boundary_points(self, X):
        """:meth:`boundary_points` in the search space (what the student trains on)."""
        check_is_fitted(self)
        if self.method not in _POINTING:
            raise ValueError(
                f"Boundary points exist for method in {_POINTING}, not {self.method!r}: SD's distances end at a "
                "reference sample and plane's at a fitted plane, not at a queried point. Use method='bd' (the default)."
            )
        _, _, points, nearest = self._cached(X, with_points=True)
        return points, nearest

    def _cached(self, X, with_points=False):
        """Distances, queries spent now, and (with ``with_points``) boundary points, searching only uncached rows."""
        check_is_fitted(self)
        X = self._z(X)
        teacher = self._get_teacher()
        memo = teacher._memo.setdefault(self._setting_key(), {})
        point_memo = teacher._memo.setdefault(self._setting_key() + ("boundary points",), {})
        keys = _row_keys(X)
        D = np.empty((len(X), len(self.classes_)))
        points, nearest = (np.array(X, copy=True), np.full(len(X), -1, dtype=np.int64)) if with_points else (None, None)
        queries = np.zeros(len(X), dtype=np.int64)
        missing = []
        for i, k in enumerate(keys):
            row = memo.get(k)
            cached_point = point_memo.get(k) if with_points else True
            if row is None or cached_point is None:
                missing.append(i)
                continue
            D[i] = row
            if with_points:
                points[i], nearest[i] = cached_point
        if missing:
            missing = np.asarray(missing)
            with query_jobs(self.n_jobs):
                found, spent, _, found_points, found_nearest = self._search(
                    X[missing], [keys[i] for i in missing], teacher
                )
            D[missing] = found
            queries[missing] = spent
            memo.update(zip((keys[i] for i in missing), found))
            if found_points is not None:
                point_memo.update(zip((keys[i] for i in missing), zip(found_points, found_nearest.tolist())))
                if with_points:
                    points[missing], nearest[missing] = found_points, found_nearest
        return D, queries, points, nearest

    def boundary_distance_snapshots(self, X, snapshots=(1000, 2000, 4000, 8000, 16000, 20000)):
        """Distances reached after given numbers of queries per (sample, class) pair.

        For ``method="mbd"`` and ``"hsj"``: the accuracy-vs-queries curve of
        the paper. Runs the search anew (nothing is read from or written to
        the distance cache; the teacher's answer cache still applies).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        snapshots : sequence of int, default=(1000, 2000, 4000, 8000, 16000, 20000)
            Queries per pair of the refining search (after BD).

        Returns
        -------
        distances : ndarray of float64 of shape (n_samples, n_classes, n_snapshots)
            Non-increasing along the last axis; a snapshot beyond what the
            budget allowed holds the final distance.

        Raises
        ------
        ValueError
            If ``method`` is not ``"mbd"`` or ``"hsj"``.
        """
        check_is_fitted(self)
        if self.method not in _REFINING:
            raise ValueError(f"Snapshots exist for method='mbd' or 'hsj', not {self.method!r}.")
        X = self._z(X)
        with query_jobs(self.n_jobs):
            _, _, snap, _, _ = self._search(X, _row_keys(X), self._get_teacher(), snapshots=tuple(snapshots))
        return snap

    def _search(self, X, keys, teacher, snapshots=None):
        """Distances (n, n_classes), queries per sample (n,), snapshots (n, n_classes, S) or None, and boundary
        points (n, n_features) with their class index (n,) (both None for SD and plane)."""
        labels = self._teacher_labels(teacher, X)
        y = self._encode(labels)
        self._check_known(labels, y)
        n, n_classes = len(X), len(self.classes_)
        sample_keys = self._sample_keys(keys)  # the random draws of a sample depend on nothing else
        sd_nearest = self.method == "sd" and self.reference_selection == "nearest"
        pairs = select_references(
            X,
            y,
            self.references_,
            self.reference_labels_,
            n_classes,
            n_directions=1 if sd_nearest else self.n_directions,
            selection=self.reference_selection,
            rng=None,
            keys=sample_keys,
        )
        if self.method == "sd":
            return (
                sample_distances(X, y, self.references_, *pairs, n_classes),
                np.zeros(n, dtype=np.int64),
                None,
                None,
                None,
            )
        query = self._query(teacher)
        with tqdm(
            desc=f"boundary search ({self.method.upper()})", unit="round", disable=not self.verbose, leave=False
        ) as bar:

            def progress(total):
                if total is None:
                    bar.update()
                else:
                    bar.total = total

            if self.method == "plane":
                D, spent = plane_distances(
                    query,
                    X,
                    y,
                    self.references_,
                    *pairs,
                    n_classes,
                    low=self.feature_range_[0],
                    high=self.feature_range_[1],
                    tol=self._tol(),
                    max_queries_per_sample=self.max_queries_per_sample,
                    progress=progress,
                )
                return D, spent, None, None, None
            D, best_pair, t_lo, t_hi, spent = binary_search_distances(
                query,
                X,
                y,
                self.references_,
                *pairs,
                n_classes,
                tol=self._tol(),
                max_queries_per_sample=self.max_queries_per_sample,
                progress=progress,
            )
            tol = self._tol()

            def bd_point(i, j):
                """The confirmed end of BD's best bracket, and whether the bracket was resolved (a budget can stop it early)."""
                q = best_pair[i, j]
                points = X[i] + t_hi[q].astype(X.dtype)[:, None] * (self.references_[pairs[1][q]] - X[i])
                return points, t_hi[q] - t_lo[q] <= tol

            if self.method not in _REFINING:
                return (D, spent, None) + _nearest_points(X, D, bd_point, self.input_space_.project)
            bar.total = None
            return self._refine(
                query, X, sample_keys, y, pairs, D, best_pair, t_lo, t_hi, spent, snapshots, progress, bd_point
            )

    def _sample_keys(self, keys):
        """A uint64 per sample from the seed and the sample's bytes: its random draws depend on nothing else."""
        seed = 0 if self.random_state is None or not isinstance(self.random_state, Integral) else int(self.random_state)
        row_key = np.array([int.from_bytes(k[:8], "little") for k in keys], dtype=np.uint64)
        with np.errstate(over="ignore"):
            return row_key ^ (np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15))

    def _refine(self, query, X, sample_keys, y, pairs, D, best_pair, t_lo, t_hi, spent, snapshots, progress, bd_point):
        """MBD or HSJ from BD's best direction of each (sample, class); ``bd_point(i, j)`` gives BD's boundary points."""
        pair_sample, pair_reference, _ = pairs
        rows, cls = np.nonzero(best_pair >= 0)
        best = best_pair[rows, cls]
        seg = self.references_[pair_reference[best]] - X[pair_sample[best]]
        length = np.linalg.norm(seg, axis=1)
        theta = (seg / length[:, None]).astype(X.dtype)
        pair_key = sample_keys[rows] ^ (cls.astype(np.uint64) << np.uint64(48))
        kernel = sign_opt_distances if self.method == "mbd" else hopskipjump_distances
        per_pair = self.max_queries_per_pair
        if per_pair is None:
            per_pair = _DEFAULT_PAIR_BUDGET[self.method]
        g, theta, used, snap = kernel(
            query,
            X,
            y,
            theta,
            t_lo[best] * length,
            t_hi[best] * length,
            rows,
            cls,
            pair_key,
            low=self.feature_range_[0],
            high=self.feature_range_[1],
            max_queries_per_pair=per_pair,
            max_queries_per_sample=self.max_queries_per_sample,
            queries_per_sample=spent,
            snapshots=snapshots,
            progress=progress,
        )
        refined = g < D[rows, cls]
        pair_of = np.full(D.shape, -1)
        pair_of[rows, cls] = np.arange(len(rows))
        low, high = self.feature_range_

        def point(i, j):  # the refined direction's point where it beat BD, else BD's
            out, resolved = bd_point(i, j)
            k = pair_of[i, j]
            use = refined[k]
            out[use] = np.clip(X[i[use]] + g[k[use]].astype(X.dtype)[:, None] * theta[k[use]], low, high)
            return out, resolved | use

        D = D.copy()
        D[rows, cls] = np.minimum(D[rows, cls], g)
        spent = spent + np.bincount(rows, weights=used, minlength=len(X)).astype(np.int64)
        if snap is not None:
            full = np.repeat(D[:, :, None], snap.shape[1], axis=2)
            full[rows, cls] = snap
            snap = full
        return (D, spent, snap) + _nearest_points(X, D, point, self.input_space_.project)

    def distance_logits(self, X):
        """Logits ``z`` of the soft labels, before the temperature.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        logits : ndarray of float64 of shape (n_samples, n_classes)
            ``distances_to_logits(boundary_distances(X), distance_to_logit)``.
        """
        return distances_to_logits(self.boundary_distances(X), self.distance_to_logit)

    def transform(self, X):
        """Soft labels ``softmax(z / temperature)`` of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        soft_labels : ndarray of float64 of shape (n_samples, n_classes)
            Rows sum to 1; columns follow ``classes_``; the teacher's own
            class has the largest probability.
        """
        return soft_labels(self.distance_logits(X), self.temperature)

    @property
    def _n_features_out(self):
        return len(self.classes_)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


def _nearest_points(X, D, point, project):
    """``point(i, j)``'s boundary point of each sample's nearest other class ``j`` (as ``project`` makes it a valid
    row: the one the teacher answered), and ``j``.

    A sample gets its own row and class -1 where no other class was reached, or where the point is not
    within the search's tolerance of the boundary (a query budget stopped its bracket early).
    """
    masked = np.where(D > 0, D, np.inf)  # the own class's distance is 0
    nearest = masked.argmin(axis=1)
    reached = np.isfinite(masked[np.arange(len(X)), nearest])
    points = np.array(X, copy=True)
    i = np.flatnonzero(reached)
    found, resolved = point(i, nearest[i])
    points[i[resolved]] = project(found[resolved])
    reached[i[~resolved]] = False
    return points, np.where(reached, nearest, -1).astype(np.int64)
