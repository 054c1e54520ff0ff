"""Saving and loading models safely: skops for scikit-learn, weights only for PyTorch.

db3learn never unpickles a file. A scikit-learn model is read from a
``.skops`` file, whose types are checked against the ones skops trusts
before anything is built; a distilled student is a directory holding the
network's weights (read with ``torch.load(weights_only=True)``) and a small
JSON file naming its architecture (a module of :mod:`db3learn.models`) and
its classes.
"""

import inspect
import json
import pickle
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from ._input_space import _ONE_HOT, _codes, _indicators, is_frame
from .exceptions import UntrustedModelError
from .models import MLP, LeNet5

__all__ = ["SavedStudent", "load_model", "load_student", "save_student"]

STUDENT_CONFIG = "student.json"
STUDENT_WEIGHTS = "weights.pt"
_FORMAT = "db3learn-student"
_MODULES = {"MLP": MLP, "LeNet5": LeNet5}
_CONFIG_KEYS = ("module_params", "classes", "classes_dtype", "n_features_in")
# What skops raises on a file that is not one of its archives, or a damaged one: the zip reader's
# errors, and the schema walker's on a schema.json of another shape.
_SKOPS_READ_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    KeyError,
    IndexError,
    AttributeError,
    TypeError,
    ValueError,
)
_PICKLE_HINT = (
    'If you trust that file, convert it once: `python -c "import joblib, skops.io; '
    "skops.io.dump(joblib.load('model.joblib'), 'model.skops')\"`."
)


def _reason(exc, limit=160):
    """``exc`` as a short one-line reason for an error message."""
    text = " ".join(str(exc).split()) or "no detail"
    return f"{type(exc).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


def load_model(path, *, trusted=None):
    """Load a saved classifier without unpickling anything.

    Parameters
    ----------
    path : str or path
        A ``.skops`` file (a scikit-learn estimator or pipeline, saved with
        ``skops.io.dump``), or a student directory written by
        :func:`save_student` or ``db3learn distill``.
    trusted : list of str or None, default=None
        Fully qualified names of types to load from a ``.skops`` file on
        top of the ones skops trusts (scikit-learn's, numpy's, scipy's).
        List only types you have checked: loading a type may run its code.

    Returns
    -------
    model : object with ``predict(X)``

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    UntrustedModelError
        If the ``.skops`` file holds types that are neither trusted by
        skops nor listed in ``trusted``. Nothing of the file is built.
    ValueError
        If ``path`` is in another format (a pickle, joblib or bare
        PyTorch file, also when renamed ``.skops``), is a damaged or
        truncated ``.skops`` archive, or does not hold a classifier; or,
        for a student directory, as :func:`load_student`. The message
        names the file and is one line; nothing of the file is run.

    Examples
    --------
    >>> import tempfile, os, skops.io
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from db3learn.io import load_model
    >>> X, y = load_iris(return_X_y=True)
    >>> path = os.path.join(tempfile.mkdtemp(), "iris.skops")
    >>> skops.io.dump(LogisticRegression(max_iter=1000).fit(X, y), path)
    >>> load_model(path).predict(X[:3])
    array([0, 0, 0])
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No model at {path}: expected a .skops file or a student directory.")
    if path.is_dir():
        return load_student(path)
    if path.suffix != ".skops":
        raise ValueError(
            f"db3learn loads scikit-learn models from .skops files and students from directories written by "
            f"`db3learn distill`; it never unpickles a file such as {path.name}. {_PICKLE_HINT}"
        )
    import skops.io

    with path.open("rb") as f:
        head = f.read(4)
    if head[:2] != b"PK":  # a skops file is a zip archive
        what = "a pickle" if head[:1] == b"\x80" else "no zip archive"
        raise ValueError(
            f"{path} holds {what}, not a skops archive, though it is named .skops; db3learn never unpickles a "
            f"file. {_PICKLE_HINT}"
        )
    try:
        untrusted = sorted(set(skops.io.get_untrusted_types(file=path)) - set(trusted or ()))
    except _SKOPS_READ_ERRORS as exc:
        raise _unreadable_skops(path, exc) from exc
    if untrusted:
        raise UntrustedModelError(
            f"{path.name} holds types that skops does not trust: {untrusted}. Loading them could run their "
            "code, so nothing was loaded. If you know these types and trust the file's author, allow them "
            f"explicitly: load_model(path, trusted={untrusted}), or `db3learn serve --trust TYPE` for each.",
            untrusted_types=untrusted,
        )
    try:
        model = skops.io.load(path, trusted=list(trusted or ()) or None)
    except _SKOPS_READ_ERRORS as exc:
        raise _unreadable_skops(path, exc) from exc
    if not hasattr(model, "predict"):
        raise ValueError(
            f"{path.name} holds a {type(model).__name__}, which has no predict method; save a fitted classifier."
        )
    return model


def _unreadable_skops(path, exc):
    return ValueError(
        f"{path} is not a readable .skops file ({_reason(exc)}): expected a complete zip archive written by "
        "skops.io.dump. The file may be truncated or damaged; save the model again with skops.io.dump(model, path)."
    )


class SavedStudent(ClassifierMixin, BaseEstimator):
    """A distilled student loaded from disk: predicts labels without its teacher.

    Made by :func:`load_student`; its network runs on the CPU.

    Parameters
    ----------
    module : torch.nn.Module
        The student network, weights loaded, returning logits.
    classes : ndarray of shape (n_classes,)
        The teacher's labels, in the order of the network's outputs.
    config : dict
        The saved configuration (architecture, sizes, distillation settings).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    module_ : torch.nn.Module
    """

    def __init__(self, module, classes, config):
        self.module = module
        self.classes = classes
        self.config = config
        self.module_ = module.eval()
        self.classes_ = np.asarray(classes)
        self.n_features_in_ = int(config["n_features_in"])
        affine = config.get("input_affine")  # a numeric table's standardisation (InputSpace), saved by save_student
        self._affine = None if affine is None else tuple(np.asarray(v, dtype=np.float64) for v in affine)
        self._columns = _TableColumns(config["input_columns"]) if config.get("input_columns") is not None else None
        masses = config.get("point_masses") or []  # InputSpace.point_mass: [input column, value in X's units]
        self._mass_columns = np.asarray([int(j) for j, _ in masses], dtype=np.int64)
        self._mass_values = np.asarray([float(v) for _, v in masses], dtype=np.float64)
        if np.any((self._mass_columns < 0) | (self._mass_columns >= self.n_features_in_)):
            raise ValueError(f"point_masses name columns outside 0..{self.n_features_in_ - 1}")
        if self._columns is not None and self._columns.names is not None:
            self.feature_names_in_ = np.asarray(self._columns.names, dtype=object)

    def _logits(self, X):
        if self._columns is not None:  # a table with categorical columns: one-hot and standardise as in distillation
            Z = self._columns.to_student(X, self._mass_columns, self._mass_values)
            with torch.inference_mode():
                return self.module_(torch.from_numpy(Z))
        X = np.asarray(X, dtype=np.float32 if self._affine is None else np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"Expected rows of {self.n_features_in_} features, an array of shape (n_samples, {self.n_features_in_}); got shape {X.shape}."
            )
        if self._affine is not None:
            masses = _indicators([X[:, j] for j in self._mass_columns], self._mass_values, len(X))
            X = np.hstack([X * self._affine[0] + self._affine[1], masses]).astype(np.float32)
        with torch.inference_mode():
            return self.module_(torch.from_numpy(X))

    def predict(self, X):
        """The student's label for each row of ``X`` (array-like of shape ``(n_samples, n_features_in_)``)."""
        return self.classes_[self._logits(X).argmax(dim=1).numpy()]

    def predict_proba(self, X):
        """Softmax of the student's logits, of shape (n_samples, n_classes), columns as ``classes_``."""
        return torch.softmax(self._logits(X), dim=1).numpy()


def save_student(distiller, directory):
    """Save a fitted :class:`~db3learn.DB3Distiller`'s student to ``directory``.

    Writes ``weights.pt`` (the network's ``state_dict``, as skorch's
    ``save_params(f_params=...)`` does) and ``student.json`` (architecture,
    its parameters, classes and distillation settings). Only students whose
    module is one of :mod:`db3learn.models` (the default :class:`MLP`, or
    :class:`LeNet5`) can be saved, so that loading never imports code named
    by a file.

    Parameters
    ----------
    distiller : DB3Distiller
        Fitted.
    directory : str or path
        Created if needed; existing files of the same names are replaced.

    Returns
    -------
    directory : pathlib.Path

    Raises
    ------
    ValueError
        If the student's module is not one of :mod:`db3learn.models`.
    """
    check_is_fitted(distiller)
    net = distiller.student_
    module = net.module
    if not isinstance(module, type) or _MODULES.get(module.__name__) is not module:
        raise ValueError(
            f"save_student saves students whose module is a db3learn.models class (MLP, LeNet5) given by class; "
            f"this one is {module!r}. Save distiller.student_.module_.state_dict() with torch.save yourself."
        )
    space = distiller.input_space_
    module_params = {k[len("module__") :]: v for k, v in net.get_params().items() if k.startswith("module__")}
    classes = np.asarray(distiller.classes_)
    config = {
        "format": _FORMAT,
        "version": 1,
        "module": module.__name__,
        "module_params": _jsonable(module_params),
        "classes": classes.tolist(),
        "classes_dtype": classes.dtype.str,
        "n_features_in": int(distiller.n_features_in_),
        "temperature": float(distiller.temperature_),
        "kd_weight": float(distiller.kd_weight),
    }
    if not space.identity_ and "categorical" in space.feature_types_:
        config["input_columns"] = _TableColumns.describe(space)
    elif not space.identity_:  # per column, the student sees x * a + b (InputSpace's scale and centring)
        a = 1.0 / space.scale_
        config["input_affine"] = [a.tolist(), (-space.center_ * a - space.student_offset_).tolist()]
    if not space.identity_ and len(space.point_mass_columns_):  # the student's indicators, appended to its inputs
        config["point_masses"] = [
            [int(j), float(v)] for j, v in zip(space.point_mass_columns_, space.point_mass_values_)
        ]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in net.module_.state_dict().items()}, directory / STUDENT_WEIGHTS)
    (directory / STUDENT_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    return directory


def load_student(directory):
    """Load a student saved by :func:`save_student` (or ``db3learn distill``).

    Parameters
    ----------
    directory : str or path

    Returns
    -------
    student : SavedStudent

    Raises
    ------
    FileNotFoundError
        If ``student.json`` or ``weights.pt`` is missing.
    ValueError
        If ``student.json`` is not JSON, not a db3learn student's
        configuration, lacks a key, names an unknown architecture or
        parameters it does not take; or if ``weights.pt`` is not a
        ``state_dict`` of tensors (a pickle of other objects is refused by
        ``torch.load(weights_only=True)`` and nothing in it is run), is
        damaged, or does not fit the architecture. The message is one line
        and names the file.
    """
    directory = Path(directory)
    config_path, weights_path = directory / STUDENT_CONFIG, directory / STUDENT_WEIGHTS
    for p in (config_path, weights_path):
        if not p.is_file():
            raise FileNotFoundError(
                f"{p} is missing: {directory} is not a student directory written by `db3learn distill`."
            )
    redo = "Save the student again with db3learn.io.save_student or `db3learn distill`."
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"{config_path} is not JSON ({_reason(exc)}): expected a db3learn student configuration. {redo}"
        ) from exc
    if not isinstance(config, dict) or config.get("format") != _FORMAT:
        raise ValueError(f'{config_path} is not a db3learn student configuration (no "format": "{_FORMAT}").')
    module_cls = _MODULES.get(config.get("module"))
    if module_cls is None:
        raise ValueError(
            f"{config_path} names the architecture {config.get('module')!r}; db3learn knows {sorted(_MODULES)}."
        )
    missing = [k for k in _CONFIG_KEYS if k not in config]
    if missing:
        raise ValueError(f"{config_path} lacks the keys {missing} of a db3learn student configuration. {redo}")
    params, name = config["module_params"], config["module"]
    if not isinstance(params, dict):
        raise ValueError(
            f"{config_path}: module_params must be an object of {name}'s parameters; got a {type(params).__name__}. {redo}"
        )
    accepted = list(inspect.signature(module_cls).parameters)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(
            f"{config_path} gives {name} parameters it does not take: {unknown}; it takes {accepted}. Remove them "
            f"from the file, or save the student again with db3learn.io.save_student or `db3learn distill`."
        )
    try:
        params = dict(params)
        for key in ("hidden_units", "input_shape"):
            if params.get(key) is not None:
                params[key] = tuple(params[key])
        module = module_cls(**params)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{config_path}: {name} cannot be built from module_params {params} ({_reason(exc)}). {redo}"
        ) from exc
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # torch's own text suggests weights_only=False: never relay that
        raise ValueError(
            f"{weights_path} holds objects other than tensors, which torch.load(weights_only=True) refuses, so "
            f"nothing in it was run or loaded: expected the state_dict written by save_student. {redo}"
        ) from exc
    except (RuntimeError, EOFError, KeyError, ValueError, OSError) as exc:
        raise ValueError(
            f"{weights_path} is not a readable PyTorch weights file ({_reason(exc, 100)}): it may be truncated or "
            f"damaged. {redo}"
        ) from exc
    if not isinstance(state, dict):
        raise ValueError(
            f"{weights_path} holds a {type(state).__name__}; expected a state_dict (a dict of tensors). {redo}"
        )
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(
            f"{weights_path} does not fit the architecture in {config_path} ({_reason(exc, 300)}). {redo}"
        ) from exc
    try:
        classes = np.asarray(config["classes"], dtype=np.dtype(config["classes_dtype"]))
        return SavedStudent(module, classes, config)
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(
            f"{config_path} holds classes, n_features_in, input_affine, input_columns or point_masses of the wrong form "
            f"({_reason(exc)}). {redo}"
        ) from exc


class _TableColumns:
    """A table's columns as a saved student sees them: one-hot categories, standardised numbers.

    The JSON form of the fitted :class:`~db3learn.InputSpace` parts that
    the student's inputs need (no pickled object): per column its name,
    type, centre, scale and, for a categorical column, its categories; and
    the offset subtracted from every student input.
    """

    def __init__(self, described):
        columns = described["columns"]
        self.names = described.get("names")
        self.types = [c["type"] for c in columns]
        self.center = np.asarray([c["center"] for c in columns], dtype=np.float64)
        self.scale = np.asarray([c["scale"] for c in columns], dtype=np.float64)
        self.categories = [
            None if c.get("categories") is None else np.asarray(c["categories"], dtype=object) for c in columns
        ]
        self.offset = np.asarray(described["student_offset"], dtype=np.float64)
        if not (np.all(np.isfinite(self.scale)) and np.all(self.scale > 0) and np.all(np.isfinite(self.center))):
            raise ValueError("input_columns need finite centres and positive, finite scales")
        widths = [len(c) if t == "categorical" else 1 for t, c in zip(self.types, self.categories)]
        self.starts = np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(int)
        if int(np.sum(widths)) != len(self.offset):
            raise ValueError(
                f"input_columns describe {int(np.sum(widths))} student inputs, student_offset {len(self.offset)}"
            )

    @staticmethod
    def describe(space):
        names = None if space.columns_ is None else [_jsonable(n) for n in space.columns_]
        columns = []
        for j, t in enumerate(space.feature_types_):
            column = {"type": str(t), "center": float(space.center_[j]), "scale": float(space.scale_[j])}
            if t == "categorical":
                column["categories"] = [_jsonable(c) for c in space.categories_[j].tolist()]
            columns.append(column)
        return {"names": names, "columns": columns, "student_offset": space.student_offset_.tolist()}

    def to_student(self, X, mass_columns=(), mass_values=()):
        """Rows of a DataFrame (columns by name) or a 2-D array (by position) as float32 student inputs.

        ``mass_columns`` (positions) and ``mass_values``: the point masses whose indicators follow.
        """
        n = len(self.types)
        if is_frame(X):
            if self.names is not None:
                given = set(X.columns)
                missing = [c for c in self.names if c not in given]
                if missing:
                    raise ValueError(
                        f"X lacks the columns {missing[:10]} the student was distilled on; expected the columns "
                        f"{self.names[:20]}."
                    )
                X = X[self.names]
            values = [X.iloc[:, j].to_numpy() for j in range(X.shape[1])]
        else:
            X = np.asarray(X, dtype=object)
            values = [X[:, j] for j in range(X.shape[1])] if X.ndim == 2 else []
        if len(values) != n:
            raise ValueError(
                f"Expected rows of {n} columns, a DataFrame or an array of shape (n_samples, {n}); got "
                f"{getattr(X, 'shape', None)}."
            )
        for j, v in enumerate(values):
            if _missing(v):
                name = self.names[j] if self.names is not None else j
                raise ValueError(
                    f"Column {name!r} holds missing values (NaN or None); the student needs every value, as the "
                    "distiller did. Remove or impute them first."
                )
        Z = np.zeros((len(values[0]) if n else 0, len(self.offset)))
        for j, (t, v) in enumerate(zip(self.types, values)):
            start = self.starts[j]
            if t == "categorical":  # an unseen category: an all-zero block, as in distillation
                codes = _codes(self.categories[j], v)
                rows = np.flatnonzero(codes >= 0)
                Z[rows, start + codes[rows]] = _ONE_HOT
            else:
                try:
                    Z[:, start] = (np.asarray(v, dtype=np.float64) - self.center[j]) / self.scale[j]
                except (TypeError, ValueError) as exc:
                    name = self.names[j] if self.names is not None else j
                    raise ValueError(f"Column {name!r} must hold numbers; {_reason(exc)}") from exc
        masses = _indicators([np.asarray(values[j], dtype=np.float64) for j in mass_columns], mass_values, len(Z))
        return np.hstack([Z - self.offset, masses]).astype(np.float32)


def _missing(values):
    """Whether a column's values hold NaN, None or infinity."""
    if values.dtype.kind in "fc":
        return not np.isfinite(values).all()
    if values.dtype.kind == "O":
        return any(v is None or (isinstance(v, float) and not np.isfinite(v)) for v in values.tolist())
    return False


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"Cannot save the student parameter value {value!r} as JSON.")
