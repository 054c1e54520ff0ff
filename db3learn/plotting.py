"""Pictures of distillation results: quality vs queries, soft labels, pseudo samples.

matplotlib is optional: it is imported when a function is called, and a
missing matplotlib raises an :class:`ImportError` that says how to install it
(``pip install matplotlib``, or the ``docs``, ``test`` or ``bench`` extra of
db3learn).
"""

import csv
import os
from numbers import Integral

import numpy as np

__all__ = ["plot_quality_vs_queries", "plot_soft_labels", "plot_pseudo_samples"]

#: Rows of these methods are drawn as horizontal reference lines, not as curves.
REFERENCE_METHODS = ("copycat", "white-box KD")

#: Font sizes in points. A figure W inches wide shown ``px`` pixels wide draws a font of
#: ``pt`` points ``pt * px / (72 * W)`` pixels tall whatever its dpi: with the default figure
#: sizes (at most 8 inches wide) these stay 12 pixels or more on a 730-pixel page column.
_FONTSIZE = {"tick": 10, "label": 11, "legend": 10, "title": 12, "cell": 10}

#: The lines' colours and markers, one pair per line: 16 colours (matplotlib's default cycle
#: has 10) and 15 markers, so that no two of the first 240 lines look alike.
_COLORS = (
    "tab:blue",
    "tab:orange",
    "tab:green",
    "tab:red",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:gray",
    "tab:olive",
    "tab:cyan",
    "navy",
    "goldenrod",
    "teal",
    "maroon",
    "magenta",
    "yellowgreen",
)
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "*", "p", "d", "H", "8")


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "db3learn.plotting needs matplotlib, which is not installed. Install it with "
            "`pip install matplotlib` (or `pip install db3learn[docs]`)."
        ) from exc
    return plt


def _records(results):
    """``results`` as a list of dicts: a CSV path, a DataFrame, a dict of columns or a sequence of dicts."""
    if isinstance(results, (str, os.PathLike)):
        with open(results, newline="") as f:
            return list(csv.DictReader(f))
    if hasattr(results, "to_dict"):  # a pandas DataFrame
        return list(results.to_dict("records"))
    if isinstance(results, dict):
        columns = {k: list(v) for k, v in results.items()}
        lengths = {k: len(v) for k, v in columns.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"All columns of results must have the same length; got lengths {lengths}.")
        n = next(iter(lengths.values()), 0)
        return [{k: v[i] for k, v in columns.items()} for i in range(n)]
    records = list(results)
    if not all(isinstance(r, dict) for r in records):
        raise TypeError(
            "results must be a CSV path, a pandas DataFrame, a dict of columns or a sequence of dicts "
            f"(one per row); got a sequence holding {type(next(r for r in records if not isinstance(r, dict))).__name__}."
        )
    return records


def _number(row, column):
    value = row[column]
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"Column {column!r} must hold numbers; row {row} has {value!r}.") from None


def _text(value):
    """A cell as a label: '' for missing, integers without '.0'."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def plot_quality_vs_queries(
    results,
    *,
    metrics=("accuracy", "fidelity"),
    queries="queries_per_sample",
    group_by=("method",),
    references=REFERENCE_METHODS,
    label=None,
    log_x=True,
    axes=None,
    title=None,
):
    """Student quality vs teacher queries per sample, one line per method.

    Draws one panel per metric. Rows are grouped by the ``group_by`` columns;
    each group is one line through its rows in order of queries, with a
    colour and a marker of its own (16 colours, 15 markers). Rows whose
    ``method`` is one of ``references`` (the copycat student, white-box KD)
    are drawn as horizontal reference lines instead: for each such method,
    the row with the highest value of the first metric (for white-box KD at
    several temperatures, the ceiling). Texts are 10 to 12 points.

    Parameters
    ----------
    results : str, path, DataFrame, dict of columns or sequence of dicts
        One row per student, such as ``benchmarks/results/*_summary.csv``
        (columns ``method``, ``mapping``, ``temperature``,
        ``budget_per_sample``, ``queries_per_sample``, ``accuracy``,
        ``fidelity``, ...). A path is read as CSV.
    metrics : sequence of str, default=("accuracy", "fidelity")
        Columns drawn on the y axes, one panel each (fractions in [0, 1]
        are drawn as they are).
    queries : str, default="queries_per_sample"
        Column of teacher queries per transfer sample, the x axis.
    group_by : sequence of str, default=("method",)
        Columns whose values name a line, e.g.
        ``("method", "mapping", "temperature")`` for one line per
        setting, with one point per query budget.
    label : callable or None, default=None
        ``label(row) -> str`` names the line of the group of ``row`` (a
        dict); ``None`` joins the ``group_by`` values with spaces.
    references : sequence of str, default=("copycat", "white-box KD")
        Values of the ``method`` column drawn as horizontal lines.
    log_x : bool, default=True
        Logarithmic x axis; rows with fewer than one query per sample are
        drawn at one.
    axes : sequence of matplotlib Axes or None, default=None
        One per metric; the legend goes outside the last one, on its right.
        ``None`` makes a new figure with a row of panels and the legend
        below them, in as many columns as fit: 8 inches wide for two or more
        metrics (4.5 for one), about 4 inches tall plus 0.3 per legend row,
        with matplotlib's constrained layout (so labels set later still fit).
    title : str or None, default=None
        Title of the figure (``suptitle``).

    Returns
    -------
    axes : ndarray of matplotlib Axes of shape (n_metrics,)

    Raises
    ------
    ValueError
        If ``results`` is empty, lacks a column, has a non-numeric metric
        or query value, or ``axes`` does not hold one Axes per metric.
    ImportError
        If matplotlib is not installed.

    Examples
    --------
    >>> from db3learn.plotting import plot_quality_vs_queries
    >>> rows = [
    ...     {"method": "copycat", "queries_per_sample": 1, "accuracy": 0.93, "fidelity": 0.94},
    ...     {"method": "BD", "queries_per_sample": 201, "accuracy": 0.955, "fidelity": 0.975},
    ...     {"method": "BD", "queries_per_sample": 391, "accuracy": 0.956, "fidelity": 0.975},
    ... ]
    >>> axes = plot_quality_vs_queries(rows)
    >>> [ax.get_ylabel() for ax in axes]
    ['accuracy', 'fidelity']
    >>> axes[0].lines[-1].get_xdata().tolist()  # the BD line
    [201.0, 391.0]
    """
    plt = _pyplot()
    rows = _records(results)
    metrics, group_by = list(metrics), list(group_by)
    if not metrics:
        raise ValueError("metrics must name at least one column, such as ('accuracy', 'fidelity').")
    if not rows:
        raise ValueError("results is empty: there are no rows to plot.")
    needed = [queries, *metrics, *group_by] + (["method"] if references else [])
    missing = [c for c in dict.fromkeys(needed) if c not in rows[0]]
    if missing:
        raise ValueError(f"results lacks the column(s) {missing}; it has {list(rows[0])}.")
    is_ref = [bool(references) and r["method"] in references for r in rows]
    lines = {}
    for r, ref in zip(rows, is_ref):
        if not ref:
            name = label(r) if label is not None else " ".join(t for t in (_text(r[c]) for c in group_by) if t)
            lines.setdefault(name, []).append(r)
    ref_rows = {}
    for r, ref in zip(rows, is_ref):
        if ref:
            best = ref_rows.get(r["method"])
            if best is None or _number(r, metrics[0]) > _number(best, metrics[0]):
                ref_rows[r["method"]] = r
    ref_names = []
    for method, r in ref_rows.items():
        T = _text(r.get("temperature"))
        ref_names.append(f"{method} (T={T})" if T else method)

    new_figure = axes is None
    if new_figure:
        # the legend goes below the panels, in as many columns as fit the figure's width
        width = min(8.0, 1.0 + 3.5 * len(metrics))
        names = [*ref_names, *lines]
        column = (max(len(n) for n in names) * 0.55 + 4.0) * _FONTSIZE["legend"] / 72  # inches per column
        ncol = int(max(1, min(len(names), (width - 0.2) // column)))
        height = 3.8 + 0.3 * -(-len(names) // ncol) + (0.4 if title is not None else 0.0)
        fig, axes = plt.subplots(1, len(metrics), figsize=(width, height), squeeze=False, layout="constrained")
        axes = axes[0]
    else:
        axes = np.atleast_1d(np.asarray(axes, dtype=object)).ravel()
        if len(axes) != len(metrics):
            raise ValueError(f"axes must hold one Axes per metric: {len(metrics)} metric(s), got {len(axes)} Axes.")
        fig = axes[0].figure

    styles = ("--", ":", "-.")
    for ax, metric in zip(axes, metrics):
        for k, (r, name) in enumerate(zip(ref_rows.values(), ref_names)):
            ax.axhline(_number(r, metric), color="grey" if k == 0 else "black", ls=styles[k % 3], lw=1.2, label=name)
        for k, (name, rs) in enumerate(lines.items()):
            x = np.array([_number(r, queries) for r in rs])
            y = np.array([_number(r, metric) for r in rs])
            order = np.argsort(x, kind="stable")
            x, y = x[order], y[order]
            if log_x:
                x = np.maximum(x, 1.0)
            color, marker = _COLORS[k % len(_COLORS)], _MARKERS[k % len(_MARKERS)]
            ax.plot(x, y, "-", color=color, marker=marker, ms=7, label=name)
        if log_x:
            ax.set_xscale("log")
        ax.set_xlabel(queries.replace("_", " "), fontsize=_FONTSIZE["label"])
        ax.set_ylabel(metric.replace("_", " "), fontsize=_FONTSIZE["label"])
        ax.tick_params(labelsize=_FONTSIZE["tick"])
        ax.grid(True, alpha=0.3)
    if new_figure:
        handles, names = axes[0].get_legend_handles_labels()
        fig.legend(handles, names, loc="outside lower center", ncol=ncol, fontsize=_FONTSIZE["legend"], frameon=False)
    else:  # outside the last panel, on its right
        axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=_FONTSIZE["legend"])
    if title is not None:
        fig.suptitle(title, fontsize=_FONTSIZE["title"])
    return np.asarray(axes, dtype=object)


def plot_soft_labels(
    soft_labels, classes=None, *, sample_names=None, annotate=True, fmt=".2f", cmap="Blues", ax=None, title=None
):
    """A heat map of soft labels: one row per sample, one column per class.

    Parameters
    ----------
    soft_labels : array-like of shape (n_samples, n_classes)
        Probabilities, such as the output of
        :meth:`DecisionBoundarySoftLabeler.transform
        <db3learn.DecisionBoundarySoftLabeler.transform>`; each value must
        lie in [0, 1].
    classes : array-like of shape (n_classes,) or None, default=None
        Column labels, such as the labeler's ``classes_``; ``None``: 0, 1, ...
    sample_names : array-like of shape (n_samples,) or None, default=None
        Row labels; ``None``: 0, 1, ...
    annotate : bool, default=True
        Write each value in its cell.
    fmt : str, default=".2f"
        Format of the written values.
    cmap : str or matplotlib Colormap, default="Blues"
    ax : matplotlib Axes or None, default=None
        Where to draw; ``None`` makes a new figure of
        ``(0.6 * n_classes + 2, 0.4 * n_samples + 1.5)`` inches (8 x 5.5
        for 10 classes and 10 samples) with matplotlib's constrained layout.
        The values are written at 10 points, which need cells of about 0.35
        inch by 0.2: for a figure shown at page width (about 730 pixels),
        keep it at most 8 inches wide and stack several matrices vertically.
    title : str or None, default=None

    Returns
    -------
    ax : matplotlib Axes
        Its first image holds the matrix (``ax.images[0].get_array()``).

    Raises
    ------
    ValueError
        If ``soft_labels`` is not 2-D or holds values outside [0, 1] or
        NaN, or ``classes`` or ``sample_names`` do not match its shape.
    ImportError
        If matplotlib is not installed.

    Examples
    --------
    >>> from db3learn.plotting import plot_soft_labels
    >>> ax = plot_soft_labels([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], classes=["a", "b", "c"])
    >>> [t.get_text() for t in ax.get_xticklabels()]
    ['a', 'b', 'c']
    """
    plt = _pyplot()
    P = np.asarray(soft_labels, dtype=np.float64)
    if P.ndim != 2:
        raise ValueError(f"soft_labels must be 2-D of shape (n_samples, n_classes); got shape {P.shape}.")
    if P.size == 0:
        raise ValueError(f"soft_labels is empty (shape {P.shape}); give at least one sample and one class.")
    if np.isnan(P).any() or (P < 0).any() or (P > 1).any():
        raise ValueError(
            "soft_labels must be probabilities in [0, 1]; got values from "
            f"{np.nanmin(P):.3g} to {np.nanmax(P):.3g}{' and NaN' if np.isnan(P).any() else ''}. "
            "Pass the output of transform (or soft_labels), not distances or logits."
        )
    n_samples, n_classes = P.shape
    classes = np.arange(n_classes) if classes is None else np.asarray(classes)
    if classes.shape != (n_classes,):
        raise ValueError(f"classes must have one label per column: {n_classes} columns, got shape {classes.shape}.")
    names = np.arange(n_samples) if sample_names is None else np.asarray(sample_names)
    if names.shape != (n_samples,):
        raise ValueError(f"sample_names must have one name per row: {n_samples} rows, got shape {names.shape}.")
    if ax is None:
        _, ax = plt.subplots(figsize=(0.6 * n_classes + 2, 0.4 * n_samples + 1.5), layout="constrained")
    image = ax.imshow(P, cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    colorbar = ax.figure.colorbar(image, ax=ax)
    colorbar.set_label("probability", fontsize=_FONTSIZE["label"])
    colorbar.ax.tick_params(labelsize=_FONTSIZE["tick"])
    ax.set_xticks(np.arange(n_classes), [str(c) for c in classes])
    ax.set_yticks(np.arange(n_samples), [str(s) for s in names])
    ax.tick_params(labelsize=_FONTSIZE["tick"])
    ax.set_xlabel("class", fontsize=_FONTSIZE["label"])
    ax.set_ylabel("sample", fontsize=_FONTSIZE["label"])
    if annotate:
        for i in range(n_samples):
            for j in range(n_classes):
                ax.text(
                    j,
                    i,
                    format(P[i, j], fmt),
                    ha="center",
                    va="center",
                    fontsize=_FONTSIZE["cell"],
                    color="white" if P[i, j] > 0.6 else "black",
                )
    if title is not None:
        ax.set_title(title, fontsize=_FONTSIZE["title"])
    return ax


def plot_pseudo_samples(
    samples, labels, *, image_shape, n_per_class=8, classes=None, cmap="gray", vmin=0.0, vmax=1.0, title=None
):
    """A grid of pseudo samples (or any images), one row per class.

    Parameters
    ----------
    samples : array-like of shape (n_samples, n_features)
        Flat images, such as :class:`~db3learn.ZeroShotTransferSet`'s
        ``samples_``; ``n_features`` must equal ``prod(image_shape)``.
    labels : array-like of shape (n_samples,)
        The (teacher's) label of each sample, such as ``labels_``.
    image_shape : tuple of int
        ``(height, width)``, or ``(1, height, width)`` for one channel.
    n_per_class : int, default=8
        Images per row; a class with fewer leaves blank cells.
    classes : array-like or None, default=None
        The classes to show, one row each, in this order; ``None``: the
        sorted unique ``labels``.
    cmap : str or matplotlib Colormap, default="gray"
    vmin, vmax : float, default=0.0, 1.0
        Range of the colour map (the valid input range).
    title : str or None, default=None

    Returns
    -------
    fig : matplotlib Figure
        Of ``(0.8 * n_per_class, 1.0 * n_classes + 0.5)`` inches (0.1
        instead of 0.5 without a title), with ``n_classes x n_per_class``
        Axes; the first of each row is titled with its class (10 points;
        the title is 12).

    Raises
    ------
    ValueError
        If ``samples`` is not 2-D or its rows do not have
        ``prod(image_shape)`` values, ``labels`` does not have one entry
        per sample, ``n_per_class`` is not a positive integer, or there are
        no classes to show.
    ImportError
        If matplotlib is not installed.

    Examples
    --------
    >>> import numpy as np
    >>> from db3learn.plotting import plot_pseudo_samples
    >>> fig = plot_pseudo_samples(np.zeros((4, 4)), [0, 0, 1, 1], image_shape=(2, 2), n_per_class=2)
    >>> len(fig.axes)
    4
    """
    plt = _pyplot()
    X = np.asarray(samples, dtype=np.float64)
    y = np.asarray(labels)
    if X.ndim != 2:
        raise ValueError(f"samples must be 2-D of shape (n_samples, n_features); got shape {X.shape}.")
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 3 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) != 2:
        raise ValueError(f"image_shape must be (height, width) or (1, height, width); got {tuple(image_shape)}.")
    if X.shape[1] != shape[0] * shape[1]:
        raise ValueError(
            f"Each sample must have prod(image_shape) = {shape[0] * shape[1]} values; samples have {X.shape[1]}."
        )
    if y.shape != (len(X),):
        raise ValueError(f"labels must have one entry per sample: {len(X)} samples, got labels of shape {y.shape}.")
    if not isinstance(n_per_class, Integral) or n_per_class < 1:
        raise ValueError(f"n_per_class must be a positive integer; got {n_per_class!r}.")
    classes = np.unique(y) if classes is None else np.asarray(classes)
    if len(classes) == 0:
        raise ValueError("There are no classes to show: labels is empty and classes was not given.")
    fig, axes = plt.subplots(
        len(classes),
        n_per_class,
        figsize=(n_per_class * 0.8, len(classes) * 1.0 + (0.5 if title is not None else 0.1)),
        squeeze=False,
    )
    for r, c in enumerate(classes):
        rows = X[y == c][:n_per_class]
        for k in range(n_per_class):
            ax = axes[r, k]
            ax.axis("off")
            if k < len(rows):
                ax.imshow(rows[k].reshape(shape), cmap=cmap, vmin=vmin, vmax=vmax)
        axes[r, 0].set_title(str(c), fontsize=_FONTSIZE["tick"], loc="left")
    if title is not None:
        fig.suptitle(title, fontsize=_FONTSIZE["title"])
    fig.tight_layout()
    return fig
