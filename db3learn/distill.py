"""``db3learn distill``: distill a saved model or a model behind a URL, from a data file."""

import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
from sklearn.utils import check_random_state

from ._distiller import DB3Distiller
from ._input_space import is_frame, take_rows
from ._labeler import DecisionBoundarySoftLabeler
from ._remote import RemoteTeacher
from ._teachers import Teacher
from .io import load_model, save_student

__all__ = ["DistillReport", "load_data", "make_teacher", "run_distill"]

_MODEL_URL = re.compile(
    r"^(?P<base>.*?)/(?P<protocol>v[12])/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?/?$"
)


@dataclass
class DistillReport:
    """What one ``db3learn distill`` run did; times in seconds, fidelity in [0, 1].

    ``queries`` counts the rows sent to the teacher during this run (the
    ones answered from the cache cost nothing and are counted in
    ``cache_hits``); ``queries_holdout`` of them labelled the held-out rows
    on which ``fidelity`` (agreement of student and teacher) is measured.
    ``requests`` and ``retries`` are the HTTP requests sent and retried
    (``None`` for a local teacher). ``method`` is ``"mixtures"`` when the
    queries bought teacher-labelled mixtures (the defaults; ``mixtures``
    counts them), else the boundary searches' estimator; ``temperature``
    is that of their soft labels (``None`` without).
    """

    teacher: str
    model_name: str | None
    protocol: str | None
    n_rows: int
    n_train: int
    n_holdout: int
    n_features: int
    n_classes: int
    queries: int
    queries_holdout: int
    cache_hits: int
    requests: int | None
    retries: int | None
    fidelity: float | None
    method: str
    temperature: float | None
    hidden_units: list | None
    epochs: int
    mixtures: int
    time_s: float
    out: str

    def as_dict(self):
        return asdict(self)


def load_data(path, *, text_as="str"):
    """The transfer set in ``path``: a ``.npy`` array, a ``.csv`` file or a ``.parquet`` table.

    A numeric CSV file (values separated by commas, optionally one header
    row, recognised as a first row that is not all numbers) gives a float
    array. A CSV file with a header row and a column of
    text (categories such as ``"owner"``) gives a pandas DataFrame whose
    text columns stay strings and whose numbers keep their integer or float
    dtype, so that a teacher fitted on a DataFrame (a ``ColumnTransformer``
    selecting columns by name) receives rows in its own format. A Parquet
    file gives a DataFrame with the dtypes it stores (``category``
    included); it needs ``pyarrow``.

    Parameters
    ----------
    path : str or path
    text_as : {"str", "category"}, default="str"
        The dtype of a CSV table's text columns: strings, or pandas
        ``category``, for a teacher that needs that dtype (scikit-learn's
        encoders and ``HistGradientBoostingClassifier`` take either).

    Returns
    -------
    X : ndarray of float64 of shape (n_samples, n_features), or DataFrame

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    ValueError
        If the file is of another kind, is empty or not 2-D, holds a text
        column without a header row, or holds missing values, NaN or
        infinity.
    ImportError
        For a Parquet file without ``pyarrow``, or a CSV file with text
        columns without ``pandas``; the message says what to install.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No data file at {path}.")
    if path.suffix == ".npy":
        X = np.load(path, allow_pickle=False)
    elif path.suffix == ".csv":
        with path.open() as f:
            first = f.readline()
        header = int(not all(_is_number(v) for v in first.split(",")))  # a first row of numbers only is data
        try:
            X = np.loadtxt(path, delimiter=",", skiprows=header, ndmin=2, dtype=np.float64)
        except ValueError as exc:
            if not header:
                raise ValueError(
                    f"{path} must hold numbers separated by commas, or start with a header row naming its columns "
                    f"when some hold text: {exc}"
                ) from None
            return _table(_numbers_kept(_pandas(path).read_csv(path), path), path, text_as)
    elif path.suffix == ".parquet":
        try:
            return _table(_pandas(path).read_parquet(path), path)
        except ImportError as exc:
            raise ImportError(
                f"Reading {path.name} needs pyarrow: pip install pyarrow (or give the table as .csv). ({exc})"
            ) from exc
    else:
        raise ValueError(f"Data files must be .npy, .csv or .parquet; got {path.name}.")
    if X.ndim != 2 or X.dtype.kind not in "biuf" or len(X) == 0:
        raise ValueError(
            f"{path} must hold a non-empty 2-D numeric array (rows x features); got shape {X.shape}, dtype {X.dtype}."
        )
    X = X.astype(np.float64, copy=False)
    if not np.isfinite(X).all():
        raise ValueError(f"{path} holds NaN or infinite values; remove or impute them first.")
    return X


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


#: a CSV text column whose values are numbers but for at most this share is a numeric column with stray tokens
_STRAY_SHARE = 0.05


def _numbers_kept(df, path):
    """``df`` read from the CSV file ``path``, refused if a column of numbers holds a few stray tokens.

    pandas reads a column of numbers with one ``"?"`` or ``"n/a"`` as text, which would silently make
    it a category for the distiller and send strings to a teacher fitted on numbers.
    """
    pd = _pandas(path)
    for column in df.columns:
        values = df[column]
        if pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_datetime64_any_dtype(values.dtype):
            continue
        numbers = pd.to_numeric(values, errors="coerce")
        stray = numbers.isna() & values.notna()
        if stray.any() and stray.sum() <= _STRAY_SHARE * len(values) and numbers.notna().any():
            tokens = list(dict.fromkeys(str(v) for v in values[stray]))
            lines = (np.flatnonzero(stray.to_numpy())[:5] + 2).tolist()  # file lines: the header is line 1
            raise ValueError(
                f"{path.name}: column {column!r} holds numbers except for {int(stray.sum()):,} value"
                f"{'s' if stray.sum() > 1 else ''} {tokens[:5]} (file lines {lines}{', ...' if stray.sum() > 5 else ''}), "
                "so it would be read as text and the teacher would receive strings in it. Fix or remove those "
                "rows (missing values must be imputed), or, if the column really holds text, give the table as "
                ".parquet with that column stored as strings."
            )
    return df


def _pandas(path):
    try:
        import pandas
    except ImportError as exc:
        raise ImportError(f"Reading the table {path.name} needs pandas: pip install pandas.") from exc
    return pandas


def _table(df, path, text_as="str"):
    """A table read from ``path``, checked: rows, and no missing values; text columns as ``text_as``."""
    if text_as not in ("str", "category"):
        raise ValueError(f'text_as must be "str" or "category"; got {text_as!r}.')
    if text_as == "category":
        for column in df.columns:
            if not (df[column].dtype.kind in "biufcmM" or isinstance(df[column].dtype, _pandas(path).CategoricalDtype)):
                df[column] = df[column].astype("category")
    if df.shape[0] == 0 or df.shape[1] == 0:
        raise ValueError(f"{path} holds no rows or no columns; expected a table with a header row.")
    missing = df.columns[df.isna().any()].tolist()
    if missing:
        raise ValueError(
            f"{path} has missing values in the columns {missing[:10]}; remove or impute them first "
            "(e.g. df.dropna() in pandas)."
        )
    return df


def make_teacher(teacher, *, model_name=None, protocol="v2", max_queries=None, trusted=None, **remote_params):
    """A :class:`~db3learn.Teacher` for a URL or a saved model file.

    Parameters
    ----------
    teacher : str or path
        ``http(s)://`` URL: a :class:`~db3learn.RemoteTeacher`. Either the
        server's base URL (then ``model_name`` is needed) or a model's URL
        such as ``http://127.0.0.1:8080/v2/models/digits-svc`` (which sets
        the model name, the protocol and a ``/versions/V`` part). Otherwise
        the path of a ``.skops`` file or a student directory
        (:func:`~db3learn.io.load_model`).
    model_name, protocol : str
        For a base URL.
    max_queries : int or None
    trusted : list of str or None
        For a ``.skops`` file.
    **remote_params
        Passed to :class:`~db3learn.RemoteTeacher` (``cache_dir``,
        ``batch_size``, ``timeout``, ...).

    Returns
    -------
    teacher : Teacher or RemoteTeacher
    """
    text = str(teacher)
    if urlsplit(text).scheme in ("http", "https"):
        match = _MODEL_URL.match(text)
        version = None
        if match:
            given = model_name
            text, protocol, model_name, version = (
                match["base"],
                match["protocol"],
                unquote(match["name"]),
                match["version"],
            )
            if given is not None and given != model_name:
                raise ValueError(f"The URL names the model {model_name!r} but model_name={given!r}; give one of them.")
        if model_name is None:
            raise ValueError(
                f"Which model at {text}? Give its name (--model-name) or its URL, e.g. {text.rstrip('/')}/v2/models/NAME."
            )
        return RemoteTeacher(
            text, model_name, protocol=protocol, model_version=version, max_queries=max_queries, **remote_params
        )
    if remote_params.get("cache_dir") is not None:
        raise ValueError(
            f"cache_dir keeps the answers of a teacher behind a URL; {text} is a local model, asked directly "
            "at no cost. Leave cache_dir out, or serve the model and distill it through its URL."
        )
    return Teacher(load_model(teacher, trusted=trusted), max_queries=max_queries)


def run_distill(
    teacher,
    data,
    out,
    *,
    method=None,
    temperature=None,
    n_directions=None,
    queries_per_sample=None,
    hidden_units=None,
    epochs=None,
    holdout=0.2,
    random_state=0,
    verbose=True,
    teacher_params=None,
):
    """Distill ``teacher`` on the rows of ``data`` and save the student in ``out``.

    The rows are shuffled (seeded by ``random_state``); a ``holdout`` share
    is kept out of the transfer set to measure the student's fidelity to
    the teacher. The student (the default MLP of
    :class:`~db3learn.DB3Distiller`) is saved with
    :func:`~db3learn.io.save_student`; the report goes to
    ``out/report.json``.

    Parameters
    ----------
    teacher : str, path or Teacher
        A URL or a saved model, given to :func:`make_teacher` with
        ``teacher_params``, or a :class:`~db3learn.Teacher`. Its query
        budget, if any, bounds the whole run; with a persistent cache, a run
        stopped by the budget or a failure resumes where it stopped.
    data : ndarray or DataFrame of shape (n_samples, n_features), or str or path
        The transfer set, or a file for :func:`load_data` (a table with
        text columns is read as a DataFrame, and the teacher receives
        DataFrames with its columns).
    out : str or path
        Directory for the student (created if needed).
    method : {"bd", "plane", "sd"} or None, default=None
        Spend the queries on boundary searches with this distance
        estimator, whose distances become soft labels (DB3KD; see
        :class:`~db3learn.DecisionBoundarySoftLabeler`). ``None``, with
        ``temperature`` and ``n_directions`` also ``None``:
        :class:`~db3learn.DB3Distiller`'s defaults, teacher-labelled
        mixtures of transfer rows (on MNIST, 99.3 % fidelity at 400 queries
        per digit against 98.8 % for the BD searches; benchmark h). Giving
        ``temperature`` or ``n_directions`` alone means BD searches.
    temperature : float or None, default=None
        Of the searches' soft labels, in the units of the data; ``None``
        keeps the distiller's default (the median distance to the nearest
        other class).
    n_directions : int or None, default=None
        BD's directions per (sample, class); ``None``: the soft labeler's
        default (10).
    queries_per_sample : int or None, default=None
        The fit's query budget per transfer row, its label included
        (:class:`~db3learn.DB3Distiller`'s ``max_queries_per_sample``).
        ``None``: 400 on images and 100 on a table with the mixtures; what
        the searches spend with a ``method``.
    hidden_units : sequence of int or None, default=None
        The student's hidden layers; ``None`` sizes one from the data.
    epochs : int or None, default=None
        Passes over the student's training rows (the transfer set and, with
        the queried rows, those too). ``None``: :class:`~db3learn.DB3Distiller`'s
        default, about 10,000 steps of 256 rows on images and 3,000 on a
        table when the queried rows are learnt, else 50 epochs (150 on a
        table). The report gives the epochs trained.
    holdout : float, default=0.2
        Share of the rows kept for the fidelity measure, in [0, 1).
    random_state : int, default=0
    verbose : bool, default=True
        Progress bars on stderr.
    teacher_params : dict or None, default=None
        Keyword arguments of :func:`make_teacher` when ``teacher`` is a URL
        or a path.

    Returns
    -------
    report : DistillReport

    Raises
    ------
    QueryBudgetExceeded, TeacherError, TeacherAnswerError, RemoteTeacherError
        From the teacher. Answers received so far stay cached (on disk with
        a ``cache_dir``): run again, with a larger budget if that ran out.
    """
    start = time.perf_counter()
    source = teacher
    if not isinstance(teacher, Teacher):
        teacher = make_teacher(teacher, **dict(teacher_params or {}))
    X = data if isinstance(data, np.ndarray) or is_frame(data) else load_data(data)
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f"holdout must be in [0, 1); got {holdout!r}.")
    order = check_random_state(random_state).permutation(len(X))
    n_holdout = int(round(holdout * len(X)))
    if len(X) - n_holdout < 2:
        raise ValueError(f"{len(X)} rows leave fewer than 2 for the transfer set with holdout={holdout}.")
    X_train, X_holdout = take_rows(X, order[n_holdout:]), take_rows(X, order[:n_holdout])
    if isinstance(teacher, RemoteTeacher) and not teacher.ready():
        raise ValueError(
            f"The server at {teacher.base_url} says model {teacher.model_name!r} is not ready; wait for it, or "
            "check the model name and protocol."
        )
    q0, hits0 = teacher.n_queries, teacher.n_cache_hits
    student_params = {} if hidden_units is None else {"student__hidden_units": tuple(int(h) for h in hidden_units)}
    # a search option asks for the searches, with the labeler's own defaults for the options not given
    search_options = {k: v for k, v in (("method", method), ("n_directions", n_directions)) if v is not None}
    labeler = DecisionBoundarySoftLabeler(**search_options) if search_options or temperature is not None else None
    distiller = DB3Distiller(
        teacher,
        soft_labeler=labeler,
        temperature=temperature,
        max_queries_per_sample=queries_per_sample,
        max_epochs=epochs,
        random_state=random_state,
        verbose=int(bool(verbose)),
        **student_params,
    ).fit(X_train)
    q1 = teacher.n_queries
    fidelity = distiller.score(X_holdout) if n_holdout else None
    out = save_student(distiller, out)
    hidden = distiller.student_.get_params().get("module__hidden_units")
    report = DistillReport(
        teacher=str(source) if not isinstance(source, Teacher) else repr(source),
        model_name=getattr(teacher, "model_name", None),
        protocol=getattr(teacher, "protocol", None),
        n_rows=len(X),
        n_train=len(X_train),
        n_holdout=n_holdout,
        n_features=X.shape[1],
        n_classes=len(distiller.classes_),
        queries=teacher.n_queries - q0,
        queries_holdout=teacher.n_queries - q1,
        cache_hits=teacher.n_cache_hits - hits0,
        requests=getattr(teacher, "n_requests", None),
        retries=getattr(teacher, "n_retries", None),
        fidelity=fidelity,
        method="mixtures" if labeler is None else labeler.method,
        temperature=distiller.temperature_ if distiller.kd_weight_ > 0 else None,
        hidden_units=None if hidden is None else [int(h) for h in hidden],
        epochs=int(distiller.student_.max_epochs),
        mixtures=int(distiller.n_mixtures_),
        time_s=round(time.perf_counter() - start, 3),
        out=str(out),
    )
    (Path(out) / "report.json").write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    return report
