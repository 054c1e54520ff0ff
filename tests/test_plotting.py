"""db3learn.plotting: what is drawn, on real data, and the errors for bad input."""

import builtins
import csv
from pathlib import Path

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from db3learn import DecisionBoundarySoftLabeler  # noqa: E402
from db3learn.plotting import plot_pseudo_samples, plot_quality_vs_queries, plot_soft_labels  # noqa: E402

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


@pytest.fixture(scope="module")
def fitted_labeler(digits):
    X, y = digits
    teacher = LogisticRegression(max_iter=500).fit(X[:600], y[:600])
    return DecisionBoundarySoftLabeler(teacher, n_directions=2, random_state=0).fit(X[:300])


@pytest.fixture(scope="module")
def summary():
    with open(RESULTS / "mnist_queries_summary.csv", newline="") as f:
        return list(csv.DictReader(f))


# -- plot_quality_vs_queries -----------------------------------------------------------------


def test_quality_vs_queries_draws_one_line_per_method_and_reference_lines(summary):
    axes = plot_quality_vs_queries(summary, title="MNIST")
    assert len(axes) == 2
    assert [ax.get_ylabel() for ax in axes] == ["accuracy", "fidelity"]
    assert axes[0].figure._suptitle.get_text() == "MNIST"
    methods = [r["method"] for r in summary if r["method"] not in ("copycat", "white-box KD")]
    for ax, metric in zip(axes, ("accuracy", "fidelity")):
        labels = [line.get_label() for line in ax.lines]
        assert labels == ["copycat", "white-box KD (T=8.0)", *dict.fromkeys(methods)]
        # the copycat line is at the copycat's value; the white-box line at the best white-box row
        copycat = next(float(r[metric]) for r in summary if r["method"] == "copycat")
        assert ax.lines[0].get_ydata()[0] == pytest.approx(copycat)
        best = max((r for r in summary if r["method"] == "white-box KD"), key=lambda r: float(r["accuracy"]))
        assert ax.lines[1].get_ydata()[0] == pytest.approx(float(best[metric]))
        # the HSJ line goes through its rows in order of queries
        hsj = sorted((float(r["queries_per_sample"]), float(r[metric])) for r in summary if r["method"] == "hsj")
        line = ax.lines[labels.index("hsj")]
        assert line.get_xdata().tolist() == [q for q, _ in hsj]
        assert line.get_ydata().tolist() == pytest.approx([v for _, v in hsj])
    assert axes[0].get_xscale() == "log"


def test_quality_vs_queries_reads_csv_path_and_groups_by_setting(summary):
    axes = plot_quality_vs_queries(
        RESULTS / "mnist_queries_summary.csv",
        metrics=("fidelity",),
        group_by=("method", "mapping", "temperature"),
        label=lambda r: f"{r['method']} {r['mapping']} T={r['temperature']}",
        log_x=False,
    )
    (ax,) = axes
    labels = [line.get_label() for line in ax.lines]
    # BD with -d at T=2: the run with a budget of 200 (201 queries) and the one without (391)
    line = ax.lines[labels.index("bd negative T=2.0")]
    assert line.get_xdata().tolist() == pytest.approx([201.0, 390.848])
    assert ax.get_xscale() == "linear"
    assert ax.get_xlabel() == "queries per sample"


def test_quality_vs_queries_draws_into_given_axes_and_accepts_columns():
    fig, axes = plt.subplots(1, 2)
    columns = {
        "method": ["a", "a", "b"],
        "queries_per_sample": [10, 1, 5],
        "accuracy": [0.5, 0.4, 0.9],
        "fidelity": [0.6, 0.5, 1.0],
    }
    out = plot_quality_vs_queries(columns, axes=axes, references=())
    assert list(out) == list(axes)
    assert axes[1].lines[0].get_xdata().tolist() == [1.0, 10.0]
    assert axes[1].lines[0].get_ydata().tolist() == [0.5, 0.6]
    assert len(fig.axes) == 2


@pytest.mark.parametrize(
    "results, kwargs, message",
    [
        ([], {}, "results is empty"),
        ([{"method": "bd", "queries_per_sample": 3, "accuracy": 0.9}], {}, r"lacks the column\(s\) \['fidelity'\]"),
        (
            [{"method": "bd", "queries_per_sample": 3, "accuracy": "high", "fidelity": 1}],
            {},
            "Column 'accuracy' must hold numbers",
        ),
        ({"method": ["a", "b"], "queries_per_sample": [1], "accuracy": [1, 2], "fidelity": [1, 2]}, {}, "same length"),
        (
            [{"method": "bd", "queries_per_sample": 3, "accuracy": 0.9, "fidelity": 0.9}],
            {"metrics": ()},
            "at least one column",
        ),
    ],
)
def test_quality_vs_queries_rejects_bad_results(results, kwargs, message):
    with pytest.raises(ValueError, match=message):
        plot_quality_vs_queries(results, **kwargs)


def test_quality_vs_queries_rejects_wrong_number_of_axes(summary):
    _, ax = plt.subplots()
    with pytest.raises(ValueError, match="one Axes per metric: 2 metric"):
        plot_quality_vs_queries(summary, axes=[ax])


def test_quality_vs_queries_rejects_rows_that_are_not_dicts():
    with pytest.raises(TypeError, match="sequence of dicts"):
        plot_quality_vs_queries([[1, 2, 3]])


# -- plot_soft_labels ------------------------------------------------------------------------


def test_soft_labels_heat_map_shows_the_matrix(digits, fitted_labeler):
    X, _ = digits
    P = fitted_labeler.transform(X[1000:1006])
    ax = plot_soft_labels(P, classes=fitted_labeler.classes_, title="soft labels")
    np.testing.assert_allclose(ax.images[0].get_array(), P)
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(c) for c in range(10)]
    assert len(ax.get_yticklabels()) == 6
    assert ax.get_title() == "soft labels"
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == P.size
    assert texts[0] == format(P[0, 0], ".2f")
    assert len(ax.figure.axes) == 2  # the matrix and its colour bar


def test_soft_labels_without_annotations_and_with_sample_names(fitted_labeler, digits):
    X, _ = digits
    P = fitted_labeler.transform(X[:3])
    ax = plot_soft_labels(P, sample_names=["x0", "x1", "x2"], annotate=False)
    assert len(ax.texts) == 0
    assert [t.get_text() for t in ax.get_yticklabels()] == ["x0", "x1", "x2"]


@pytest.mark.parametrize(
    "P, kwargs, message",
    [
        (np.full(10, 0.1), {}, r"2-D of shape \(n_samples, n_classes\); got shape \(10,\)"),
        (np.zeros((0, 3)), {}, "empty"),
        (np.array([[0.0, 2.0]]), {}, r"probabilities in \[0, 1\]"),
        (np.array([[np.nan, 1.0]]), {}, "NaN"),
        (np.full((2, 3), 1 / 3), {"classes": [0, 1]}, "one label per column: 3 columns"),
        (np.full((2, 3), 1 / 3), {"sample_names": ["a"]}, "one name per row: 2 rows"),
    ],
)
def test_soft_labels_rejects_bad_input(P, kwargs, message):
    with pytest.raises(ValueError, match=message):
        plot_soft_labels(P, **kwargs)


def test_soft_labels_rejects_distances(fitted_labeler, digits):
    X, _ = digits
    with pytest.raises(ValueError, match="not distances or logits"):
        plot_soft_labels(fitted_labeler.boundary_distances(X[:4]))


# -- plot_pseudo_samples ---------------------------------------------------------------------


def test_pseudo_samples_grid_has_one_row_per_class(digits):
    X, y = digits
    fig = plot_pseudo_samples(X[:200], y[:200], image_shape=(8, 8), n_per_class=4, title="digits")
    axes = np.array(fig.axes).reshape(10, 4)
    assert [ax.get_title(loc="left") for ax in axes[:, 0]] == [str(c) for c in range(10)]
    for c in range(10):
        first = X[:200][y[:200] == c][0]
        np.testing.assert_allclose(axes[c, 0].images[0].get_array(), first.reshape(8, 8))
    assert fig._suptitle.get_text() == "digits"


def test_pseudo_samples_leaves_blank_cells_and_takes_one_channel_shape(digits):
    X, y = digits
    keep = np.flatnonzero(y == 3)[:2]
    fig = plot_pseudo_samples(X[keep], y[keep], image_shape=(1, 8, 8), n_per_class=3, classes=[3])
    assert len(fig.axes) == 3
    assert [len(ax.images) for ax in fig.axes] == [1, 1, 0]


@pytest.mark.parametrize(
    "samples, labels, kwargs, message",
    [
        (np.zeros((4, 8, 8)), [0, 0, 1, 1], {}, r"2-D of shape \(n_samples, n_features\)"),
        (np.zeros((4, 63)), [0, 0, 1, 1], {}, r"prod\(image_shape\) = 64 values; samples have 63"),
        (np.zeros((4, 64)), [0, 1, 1], {}, "one entry per sample: 4 samples"),
        (np.zeros((4, 64)), [0, 0, 1, 1], {"n_per_class": 0}, "positive integer"),
        (np.zeros((4, 64)), [0, 0, 1, 1], {"image_shape": (3, 8, 8)}, r"\(height, width\) or \(1, height, width\)"),
        (np.zeros((0, 64)), [], {}, "no classes to show"),
    ],
)
def test_pseudo_samples_rejects_bad_input(samples, labels, kwargs, message):
    kwargs = {"image_shape": (8, 8), **kwargs}
    with pytest.raises(ValueError, match=message):
        plot_pseudo_samples(samples, labels, **kwargs)


# -- matplotlib missing ----------------------------------------------------------------------


def test_missing_matplotlib_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ImportError, match=r"pip install matplotlib"):
        plot_soft_labels([[1.0]])
