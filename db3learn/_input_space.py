"""InputSpace: the one owner of what a valid teacher query is.

Every search, the zero-shot generator and the student see samples as rows of
one float matrix ``Z`` (the *search space*); the teacher sees rows in the
user's own format. :class:`InputSpace` is learnt from the transfer set and
holds both sides: column types, ranges, categories, the scale distances are
measured in, the projection of a point onto valid rows, and the conversion to
the teacher's format.
"""

import math
import numbers
from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_feature_names, _check_n_features, check_is_fitted, validate_data

__all__ = ["InputSpace"]

_FLOATS = [np.float64, np.float32]
_TYPES = ("continuous", "integer", "binary", "categorical")
#: "auto" keeps raw units when no column's range exceeds this many times the median range (images, digits)...
_HOMOGENEOUS_RATIO = 4.0
#: ... and under this share of the varying columns span less than the median range over the ratio below: MASS Pima as
#: floats (one column of 7, a pedigree score of range 2.3 beside a glucose level of 143: 14 %) is a table, MNIST's
#: rarely lit edge pixels (at most 5.6 % of the columns in random subsets of 5 digits, 1.3 % in 200) keep it an image
_NARROW_RATIO = 16.0
_NARROW_SHARE = 0.1
#: A category switch counts as distance 1: two one-hot entries of 1/sqrt(2) change.
_ONE_HOT = 1.0 / math.sqrt(2.0)


def is_frame(X):
    """Whether ``X`` is a pandas DataFrame (without importing pandas)."""
    return hasattr(X, "iloc") and hasattr(X, "columns") and hasattr(X, "dtypes")


def take_rows(X, idx):
    """Rows ``idx`` (positions) of an array or a DataFrame."""
    return X.iloc[idx] if is_frame(X) else X[idx]


class InputSpace(TransformerMixin, BaseEstimator):
    """The teacher's input space, learnt from a transfer set.

    Boundary searches move along segments and directions in a float matrix
    ``Z`` (:meth:`transform`), where distances are measured; every point they
    ask about is mapped back to a valid row in the teacher's own format
    (:meth:`inverse_transform`): a DataFrame with the transfer set's columns
    and dtypes when it was given one, whole numbers in integer columns, one
    of the two values of a binary column, an observed category in a
    categorical column, and every value within the transfer set's range. The
    student is trained and predicts on ``Z`` too, so it gets standardised,
    one-hot encoded inputs while the teacher gets raw rows.

    Images and other homogeneous data (every column numeric, none a bool or
    a category, not a DataFrame mixing integer and float columns, no
    column's range more than 4 times the median column range, and under a
    tenth of the columns that vary spanning less than a sixteenth of it,
    e.g. pixels in [0, 1]) are the simple case: with
    ``scale="auto"``, ``Z`` is ``X`` itself, distances are in the units of
    ``X`` and points are clipped to the transfer set's global minimum and
    maximum (and rounded in integer-typed columns).

    Parameters
    ----------
    scale : {"auto", "standard", "none"}, default="auto"
        How numeric columns are scaled in ``Z``. ``"standard"``:
        ``x / s`` per column, ``s`` its standard deviation in the transfer
        set rounded to the nearest power of two (a constant column keeps
        its units), so one unit of distance is about one standard deviation
        (within a factor of 1.42), whatever the column's units: a price in
        dollars does not dominate a rate. The student also gets each such
        column centred (``student_offset_``). ``"none"``: raw units. ``"auto"``: ``"none"`` for
        homogeneous data (above), else ``"standard"``. Whatever the
        scale, a binary column becomes 0/1 and a categorical column a one-hot
        block whose entries are ``1/sqrt(2)``, so that switching a flag or a
        category is a distance of 1.
    feature_types : "auto" or dict, default="auto"
        The type of each column: ``"continuous"``, ``"integer"``,
        ``"binary"`` or ``"categorical"``. ``"auto"`` infers them from the
        dtypes: bool -> binary; category, object or string -> categorical;
        integer -> integer; float -> continuous; an integer or float column
        whose values are exactly 0 and 1 -> binary. A dict maps column names
        (DataFrame) or indices to types and overrides the inference for
        those columns. Homogeneous data under ``scale="auto"`` keep every
        column continuous (integer for integer dtypes), with no binary
        inference.
    feature_range : None, "per_feature" or (low, high), default=None
        Where numeric values are clipped, in the units of ``X``. ``None``:
        the global minimum and maximum of the transfer set for homogeneous
        data kept in raw units (images), else each column's minimum and
        maximum;
        ``"per_feature"``: each column's minimum and maximum; ``(low,
        high)``: floats or arrays of shape (n_features,), given in the
        units of ``X``.
    point_mass : float in (0, 1] or None, default=0.1
        The share of the transfer set's rows at one value above which a
        continuous column (with more than two values) gets an indicator in
        the student's inputs: ``+0.5`` where a row holds that value (its
        most frequent one), ``-0.5`` elsewhere. A tree teacher often splits
        exactly at such a value (an expenditure of 0, a capped amount),
        which a standardised column gives a student only as a point among
        neighbours a hair away: on AER ``CreditCard``, whose teacher says
        "no" about only where the expenditure is 0, the copycat of a
        gradient-boosting teacher agreed with it on 92.8 % of held-out rows
        without the indicator and on 98.5 % with it (3 seeds). Integer
        columns get none (their neighbours are whole units away; with
        indicators on counts too, copycats lost up to 3 points on ISLR
        ``Carseats``). Only the student sees them: ``Z``, the distances and
        the rows asked are unchanged. ``None``: no indicators. Homogeneous
        data kept in raw units (images) never get them.

    Attributes
    ----------
    feature_types_ : ndarray of str of shape (``n_features_in_``,)
        The type of each input column.
    identity_ : bool
        True when ``Z`` is ``X`` itself (homogeneous data in raw units):
        transform and inverse are a clip (and a rounding of integer-typed
        columns).
    center_, scale_ : ndarray of float64 of shape (``n_features_in_``,)
        ``z = (x - center_) / scale_`` for numeric columns (0 and 1 for
        categorical ones). For standardised columns ``center_`` is 0 and
        ``scale_`` the standard deviation rounded to a power of two, so that
        a row maps to ``Z`` and back to exactly its own values.
    student_offset_ : ndarray of float64 of shape (``n_features_out_``,)
        Subtracted from ``Z`` before it reaches the student (the mean of
        each standardised column, 0.5 for binary ones, 0 elsewhere), so that
        the student's inputs are centred; distances do not depend on it.
    point_mass_columns_ : ndarray of int of shape (n_point_masses,)
        The input columns (by position) that get an indicator in the
        student's inputs (see ``point_mass``), in the order of those inputs.
    point_mass_values_ : ndarray of float64 of shape (n_point_masses,)
        Their point masses, in the units of ``X``.
    low_, high_ : ndarray of float64 of shape (``n_features_in_``,)
        Valid range of each numeric column, in the units of ``X``.
    categories_ : dict of int to ndarray
        The categories seen for each categorical column (by position).
    z_low_, z_high_ : float or ndarray of float64 of shape (``n_features_out_``,)
        The box of valid points in ``Z``.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        When ``X`` was a DataFrame with string column names.
    n_features_out_ : int
        Width of ``Z``.

    Examples
    --------
    >>> import pandas as pd
    >>> from db3learn import InputSpace
    >>> df = pd.DataFrame({"income": [30_000.0, 52_000.0, 71_000.0, 40_000.0],
    ...                    "children": [0, 2, 1, 3], "student": [True, False, False, True],
    ...                    "region": pd.Categorical(["north", "south", "south", "east"])})
    >>> space = InputSpace().fit(df)
    >>> space.feature_types_.tolist()
    ['continuous', 'integer', 'binary', 'categorical']
    >>> Z = space.transform(df)
    >>> Z.shape  # 3 numeric columns and one-hot of 3 regions
    (4, 6)
    >>> space.inverse_transform((Z[:1] + Z[1:2]) / 2 + 0.01)  # about halfway between two rows: a valid row
         income  children  student region
    0  41163.84         1     True  north
    """

    _parameter_constraints = {
        "scale": [StrOptions({"auto", "standard", "none"})],
        "feature_types": [StrOptions({"auto"}), dict],
        "feature_range": [None, StrOptions({"per_feature"}), tuple, list],
        "point_mass": [Interval(Real, 0, 1, closed="right"), None],
    }

    def __init__(self, *, scale="auto", feature_types="auto", feature_range=None, point_mass=0.1):
        self.scale = scale
        self.feature_types = feature_types
        self.feature_range = feature_range
        self.point_mass = point_mass

    # -- fitting ------------------------------------------------------------------
    def fit(self, X, y=None):
        """Learn column types, ranges, categories and scale from the transfer set ``X``.

        Parameters
        ----------
        X : array-like or pandas DataFrame of shape (n_samples, n_features)
            Finite values; a DataFrame may hold numeric, bool, category and
            string (object) columns.
        y : None
            Ignored.

        Returns
        -------
        self : InputSpace

        Raises
        ------
        ValueError
            If ``X`` is empty, not 2-D, holds NaN or infinity (or missing
            values), or ``feature_types`` / ``feature_range`` do not fit it.
        """
        self._validate_params()
        X = check_input(self, X, reset=True)
        n = X.shape[1]
        if is_frame(X):
            self.columns_ = X.columns
            self.dtypes_ = list(X.dtypes)
            dtype_kinds = [_dtype_kind(dt) for dt in self.dtypes_]
        else:
            self.columns_ = None
            self.dtypes_ = [X.dtype] * n
            dtype_kinds = [_dtype_kind(X.dtype)] * n
        numeric = [k != "categorical" for k in dtype_kinds]
        values = [_column(X, j) for j in range(n)]
        num = np.column_stack([v.astype(np.float64) if numeric[j] else np.zeros(len(v)) for j, v in enumerate(values)])
        ranges = num.max(axis=0) - num.min(axis=0) if len(num) else np.zeros(n)
        all_numeric = all(k in ("continuous", "integer") for k in dtype_kinds)
        declared = self._declared(n)
        # "auto" keeps raw units for homogeneous data only: a DataFrame whose columns mix integer and float dtypes is
        # a table (MASS Pima's seven numeric columns passed the range test, and the student stayed at 52 % fidelity);
        # one dtype throughout is judged by its ranges, as the same numbers in an array are
        mixed = self.columns_ is not None and len(set(dtype_kinds)) > 1
        homogeneous = not mixed and _homogeneous(ranges)
        self.identity_ = (
            all_numeric and not declared and (self.scale == "none" or (self.scale == "auto" and homogeneous))
        )
        if self.identity_:  # raw units; integer columns still get whole numbers
            types = list(dtype_kinds)
        else:
            types = [_infer_type(kind, values[j]) for j, kind in enumerate(dtype_kinds)]
            for j, t in declared.items():
                if t != "categorical" and not numeric[j]:
                    raise ValueError(
                        f"feature_types declares column {self._name(j)!r} as {t!r}, but it holds non-numeric values "
                        f"(dtype {self.dtypes_[j]}); declare it 'categorical' or convert it first."
                    )
                types[j] = t
        self.feature_types_ = np.asarray(types)
        self.categories_ = {j: _categories(values[j]) for j in range(n) if types[j] == "categorical"}
        low, high, global_range = self._bounds(num)
        self.low_, self.high_ = low, high
        standard = not self.identity_ and self.scale != "none"
        center, scale, offset = np.zeros(n), np.ones(n), np.zeros(n)
        for j, t in enumerate(types):
            if t in ("continuous", "integer") and standard:
                sd = num[:, j].std()
                # a power of two: x / scale * scale == x exactly, so rows map back to the values given
                scale[j] = 2.0 ** np.round(np.log2(sd)) if sd > 0 else 1.0
                offset[j] = num[:, j].mean() / scale[j]
            elif t == "binary":
                lo, hi = _binary_values(num[:, j], low[j], high[j])
                center[j], scale[j] = lo, (hi - lo) if hi > lo else 1.0
                offset[j] = 0.5
        self.center_, self.scale_ = center, scale
        widths = [len(self.categories_[j]) if t == "categorical" else 1 for j, t in enumerate(types)]
        stops = np.cumsum(widths)
        self.slices_ = [slice(int(s - w), int(s)) for s, w in zip(stops, widths)]
        self.n_features_out_ = int(stops[-1]) if n else 0
        self.student_offset_ = np.zeros(self.n_features_out_)
        if standard:
            for j, t in enumerate(types):
                if t != "categorical":
                    self.student_offset_[self.slices_[j].start] = offset[j]
        masses = []
        if not self.identity_ and self.point_mass is not None and len(num):
            for j, t in enumerate(types):
                # continuous only: a count's neighbours are whole units away, which a student tells apart; with
                # integer columns too, 3 copycats on 7 tables lost up to 3 points (Carseats) and gained at most 0.7
                if t == "continuous":
                    values_j, counts = np.unique(num[:, j], return_counts=True)
                    if len(values_j) > 2 and counts.max() >= self.point_mass * len(num):
                        masses.append((j, values_j[counts.argmax()]))
        self.point_mass_columns_ = np.asarray([j for j, _ in masses], dtype=np.int64)
        self.point_mass_values_ = np.asarray([v for _, v in masses], dtype=np.float64)
        if self.identity_:
            self.z_low_, self.z_high_ = (low[0], high[0]) if global_range else (low, high)
        else:
            z_low, z_high = np.zeros(self.n_features_out_), np.zeros(self.n_features_out_)
            for j, t in enumerate(types):
                s = self.slices_[j]
                if t == "categorical":
                    z_high[s] = _ONE_HOT
                else:
                    z_low[s] = (low[j] - center[j]) / scale[j]
                    z_high[s] = (high[j] - center[j]) / scale[j]
            self.z_low_, self.z_high_ = z_low, z_high
        return self

    def _declared(self, n):
        if isinstance(self.feature_types, str):
            return {}
        out = {}
        names = list(self.columns_) if self.columns_ is not None else []
        for key, t in self.feature_types.items():
            if t not in _TYPES:
                raise ValueError(f"feature_types[{key!r}] must be one of {list(_TYPES)}; got {t!r}.")
            if isinstance(key, numbers.Integral) and not isinstance(key, bool) and 0 <= key < n:
                out[int(key)] = t
            elif key in names:
                out[names.index(key)] = t
            else:
                known = f"column names {names[:20]}" if names else f"indices 0..{n - 1}"
                raise ValueError(f"feature_types names a column {key!r} that X does not have; X has {known}.")
        return out

    def _name(self, j):
        return self.columns_[j] if self.columns_ is not None else j

    def _bounds(self, num):
        """(low, high) per column in the units of ``X``, and whether they are one global range."""
        n = num.shape[1]
        fr = self.feature_range
        if fr is None and self.identity_:
            return np.full(n, num.min()), np.full(n, num.max()), True
        if fr is None or isinstance(fr, str):
            return num.min(axis=0), num.max(axis=0), False
        if len(fr) != 2:
            raise ValueError(f"feature_range must be (low, high); got {len(fr)} items.")
        low, high = (np.asarray(v, dtype=np.float64) for v in fr)
        for name, v in (("low", low), ("high", high)):
            if v.ndim > 1 or (v.ndim == 1 and v.shape[0] != n):
                raise ValueError(
                    f"feature_range {name} must be a float or an array of shape ({n},); got shape {v.shape}."
                )
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError(f"feature_range must be finite; got low={low}, high={high}.")
        if np.any(low > high):
            raise ValueError(f"feature_range must have low <= high everywhere; got low={low}, high={high}.")
        global_range = low.ndim == 0 and high.ndim == 0 and self.identity_
        return np.broadcast_to(low, (n,)).copy(), np.broadcast_to(high, (n,)).copy(), global_range

    # -- the two directions ---------------------------------------------------------
    def transform(self, X):
        """The rows of ``X`` in the search space ``Z``.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, ``n_features_in_``)
            Rows in the transfer set's format. A category never seen in
            ``fit`` gets an all-zero one-hot block.

        Returns
        -------
        Z : ndarray of shape (n_samples, ``n_features_out_``)
            float64, or ``X``'s float dtype when :attr:`identity_`.
        """
        check_is_fitted(self)
        X = check_input(self, X, reset=False)
        return self._to_z(X)

    def _to_z(self, X):
        """``transform`` of input already checked by :func:`check_input`."""
        if self.identity_:
            return X.to_numpy(dtype=np.float64) if is_frame(X) else X
        Z = np.zeros((X.shape[0], self.n_features_out_))
        for j, t in enumerate(self.feature_types_):
            v = _column(X, j)
            s = self.slices_[j]
            if t == "categorical":
                cats = self.categories_[j]
                codes = _codes(cats, v)
                rows = np.flatnonzero(codes >= 0)
                Z[rows, s.start + codes[rows]] = _ONE_HOT
            else:
                Z[:, s.start] = (v.astype(np.float64) - self.center_[j]) / self.scale_[j]
        return Z

    def project(self, Z):
        """The valid row nearest to each point of ``Z``, still in ``Z``.

        Numeric values are clipped to their range, integer ones rounded, a
        binary value set to the nearer of its two values, a one-hot block to
        its largest entry's category. ``project(project(Z)) == project(Z)``.

        Parameters
        ----------
        Z : ndarray of shape (n_points, ``n_features_out_``)

        Returns
        -------
        Z_valid : ndarray of the same shape and dtype
        """
        return self._project(self._check_z(Z))

    def _project(self, Z):
        """``project`` of points already checked by ``_check_z``."""
        out = np.clip(Z, self.z_low_, self.z_high_)
        if self.identity_ and "integer" not in self.feature_types_:
            return out
        for j, t in enumerate(self.feature_types_):
            s = self.slices_[j]
            if t == "categorical":
                block = np.zeros_like(out[:, s])
                block[np.arange(len(out)), out[:, s].argmax(axis=1)] = _ONE_HOT
                out[:, s] = block
            elif t == "integer":
                x = np.clip(np.rint(out[:, s.start] * self.scale_[j] + self.center_[j]), self.low_[j], self.high_[j])
                out[:, s.start] = (x - self.center_[j]) / self.scale_[j]
            elif t == "binary":
                out[:, s.start] = np.rint(out[:, s.start])
        return out

    def inverse_transform(self, Z):
        """Valid rows in the teacher's format for the points ``Z`` (projected first).

        Parameters
        ----------
        Z : ndarray of shape (n_points, ``n_features_out_``)

        Returns
        -------
        X : ndarray or DataFrame of shape (n_points, ``n_features_in_``)
            A DataFrame with the transfer set's columns and dtypes when it was
            one; else an array of its dtype. Every row is valid (see
            :meth:`project`).
        """
        Z = self._check_z(Z)
        if self.identity_ and self.columns_ is None:
            return np.clip(Z, self.z_low_, self.z_high_)
        Z = self._project(Z)
        cols = []
        for j, t in enumerate(self.feature_types_):
            s = self.slices_[j]
            if t == "categorical":
                cols.append(self.categories_[j][Z[:, s].argmax(axis=1)] if len(Z) else self.categories_[j][:0])
            else:
                if t == "binary":
                    x = np.rint(Z[:, s.start]) * self.scale_[j] + self.center_[j]
                else:
                    x = np.clip(Z[:, s.start] * self.scale_[j] + self.center_[j], self.low_[j], self.high_[j])
                cols.append(np.rint(x) if t == "integer" else x)
        if self.columns_ is None:
            return np.column_stack(cols).astype(self.dtypes_[0], copy=False) if cols else np.empty((len(Z), 0))
        import pandas as pd

        data = {
            name: pd.Series(col, dtype=dt) if _dtype_kind(dt) == "categorical" else pd.Series(col).astype(dt)
            for name, dt, col in zip(self.columns_, self.dtypes_, cols)
        }
        return pd.DataFrame(data, columns=self.columns_)

    def _check_z(self, Z):
        check_is_fitted(self)
        Z = np.asarray(Z)
        if Z.ndim != 2 or Z.shape[1] != self.n_features_out_:
            raise ValueError(
                f"Expected points of shape (n_points, {self.n_features_out_}) in the search space (what transform "
                f"returns); got shape {Z.shape}."
            )
        return Z

    def _to_student(self, Z):
        """Points of ``Z`` as the student sees them: centred, with the point masses' indicators (``point_mass``)."""
        if self.identity_:
            return Z
        out = Z - self.student_offset_
        cols = self.point_mass_columns_
        if not len(cols):
            return out
        # the point mass in Z by the same arithmetic as transform's, so that a row holding it matches exactly
        at = (self.point_mass_values_ - self.center_[cols]) / self.scale_[cols]
        masses = _indicators([Z[:, self.slices_[j].start] for j in cols], at, len(Z))
        return np.hstack([out, masses.astype(out.dtype)])

    def _fingerprint(self):
        """A hashable summary: two spaces with equal fingerprints map ``Z`` to the same rows."""
        check_is_fitted(self)
        parts = [self.identity_, tuple(self.feature_types_.tolist())]
        parts += [np.asarray(v, dtype=np.float64).tobytes() for v in (self.center_, self.scale_, self.low_, self.high_)]
        parts += [tuple(map(str, self.categories_[j].tolist())) for j in sorted(self.categories_)]
        return tuple(parts)

    def get_feature_names_out(self, input_features=None):
        """Names of the columns of ``Z``: ``name`` or ``name=category``."""
        check_is_fitted(self)
        names = self.columns_ if self.columns_ is not None else [f"x{j}" for j in range(self.n_features_in_)]
        out = []
        for j, t in enumerate(self.feature_types_):
            if t == "categorical":
                out += [f"{names[j]}={c}" for c in self.categories_[j]]
            else:
                out.append(str(names[j]))
        return np.asarray(out, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        return tags


# -- helpers ------------------------------------------------------------------------
def check_input(estimator, X, *, reset):
    """``X`` validated for ``estimator``: a DataFrame stays a DataFrame, anything else becomes a float array.

    Sets or checks ``n_features_in_`` and ``feature_names_in_`` as
    ``validate_data`` does, with scikit-learn's messages.
    """
    if not is_frame(X):
        return validate_data(estimator, X, dtype=_FLOATS, reset=reset)
    _check_feature_names(estimator, X, reset=reset)
    _check_n_features(estimator, X, reset=reset)
    if X.shape[0] == 0:
        raise ValueError(
            f"Found array with 0 sample(s) (shape={X.shape}) while a minimum of 1 is required by {type(estimator).__name__}."
        )
    if X.shape[1] == 0:
        raise ValueError(
            f"Found array with 0 feature(s) (shape={X.shape}) while a minimum of 1 is required by {type(estimator).__name__}."
        )
    missing = X.isna().to_numpy().any(axis=0)
    if missing.any():
        cols = [str(c) for c in np.asarray(X.columns)[missing]][:10]
        raise ValueError(
            f"Input X contains NaN (missing values in columns {cols}). {type(estimator).__name__} needs complete "
            "rows: drop or impute them (e.g. with sklearn.impute.SimpleImputer) before fitting."
        )
    for name, dt in zip(X.columns, X.dtypes):
        if _dtype_kind(dt) == "continuous" and not np.all(np.isfinite(X[name].to_numpy(dtype=np.float64))):
            raise ValueError(
                f"Input X contains infinity in column {name!r}; {type(estimator).__name__} needs finite values."
            )
        if _dtype_kind(dt) is None:
            raise ValueError(
                f"Column {name!r} has dtype {dt}, which {type(estimator).__name__} cannot handle; use numeric, bool, "
                "category or string columns (convert dates to numbers first)."
            )
    return X


def _dtype_kind(dt):
    kind = getattr(dt, "kind", None)
    if str(dt) == "category" or str(dt).startswith("string") or kind in ("O", "U", "S"):
        return "categorical"
    if kind == "b" or str(dt) == "boolean":
        return "binary"
    if kind in ("i", "u") or str(dt) in ("Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64"):
        return "integer"
    if kind == "f" or str(dt) in ("Float32", "Float64"):
        return "continuous"
    return None


def _column(X, j):
    if is_frame(X):
        col = X.iloc[:, j]
        if _dtype_kind(col.dtype) == "categorical":
            return np.asarray(col.astype(object))
        return col.to_numpy(dtype=np.float64 if _dtype_kind(col.dtype) != "binary" else bool)
    return X[:, j]


def _infer_type(kind, values):
    if kind in ("integer", "continuous") and len(values):
        distinct = np.unique(values)
        if len(distinct) == 2 and distinct[0] == 0 and distinct[1] == 1:
            return "binary"
    return kind


def _binary_values(v, low, high):
    distinct = np.unique(v)
    if len(distinct) == 2:
        return float(distinct[0]), float(distinct[1])
    return float(min(low, 0.0)), float(max(high, 1.0)) if high <= 1 else float(high)


def _categories(values):
    try:
        return np.unique(values)
    except TypeError:  # mixed types: order by their text
        uniq = {repr(v): v for v in values}
        return np.asarray([uniq[k] for k in sorted(uniq)], dtype=object)


def _codes(categories, values):
    lookup = {c: i for i, c in enumerate(categories.tolist())}
    return np.fromiter((lookup.get(v, -1) for v in values.tolist()), dtype=np.int64, count=len(values))


def _indicators(columns, values, n_rows):
    """``+0.5`` where a column holds its point mass, ``-0.5`` elsewhere: the student's last inputs (``point_mass``)."""
    if not len(values):
        return np.zeros((n_rows, 0))
    return np.column_stack([(c == v) - 0.5 for c, v in zip(columns, values)])


def _homogeneous(ranges):
    varying = ranges[ranges > 0]
    if len(varying) == 0:
        return True
    median = np.median(varying)
    narrow = np.mean(varying < median / _NARROW_RATIO)
    return bool(varying.max() <= _HOMOGENEOUS_RATIO * median and narrow < _NARROW_SHARE)
