"""Property-based tests (Hypothesis): hostile or careless inputs end in a result or a clear error.

Random shapes, dtypes, NaN/inf, label types and teacher answers are fed to
``Teacher``, ``DecisionBoundarySoftLabeler`` and ``DB3Distiller``. Every
outcome must be a result, or an error raised by db3learn or scikit-learn
with a message that says what was expected: never a raw numpy or torch
error from deep inside (issue 17).
"""

import traceback

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from db3learn import DB3Distiller, DecisionBoundarySoftLabeler, Teacher
from db3learn.exceptions import DB3Error

PROPERTY = settings(
    deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def assert_clear_error(exc):
    """``exc`` comes from db3learn or scikit-learn, is a kind callers catch, and explains itself."""
    frames = traceback.extract_tb(exc.__traceback__)
    origin = frames[-1].filename if frames else ""
    assert isinstance(exc, DB3Error) or any(f"{part}" in origin for part in ("/db3learn/", "/sklearn/")), (
        f"{type(exc).__name__} raised from {origin}: {exc}"
    )
    assert isinstance(exc, (ValueError, TypeError, RuntimeError)), f"{type(exc).__name__}: {exc}"
    message = str(exc)
    assert len(message) >= 30 and not message.startswith("'<' not supported"), message


def run(fn):
    """``fn()``'s result, or None after checking that its error is a clear one."""
    try:
        result = fn()
    except Exception as exc:  # the property: any error is a clear one
        assert_clear_error(exc)
        event(f"error: {type(exc).__name__}")
        return None
    event("result")
    return result


# -- what a teacher may answer ------------------------------------------------------------------

LABEL_TABLES = st.sampled_from(
    [
        np.array([0, 1, 2]),
        np.array([3.0, 7.0, 9.0]),  # integral floats: fine
        np.array([0.25, 0.5, 0.75]),  # probabilities, not labels
        np.array(["cat", "dog", "eel"]),
        np.array([True, False, True]),
        np.array([None, 1, "a"], dtype=object),  # mixed types
        np.array([1, "b", 2.5], dtype=object),
        np.array([np.nan, 1.0, 2.0]),
        np.array([np.inf, 0.0, 1.0]),
    ]
)

ANSWER_SHAPES = st.sampled_from(
    ["labels", "labels", "labels", "too_short", "too_long", "probabilities", "scalar", "raises", "alternating"]
)


def make_teacher_fn(table, shape):
    """A teacher on rows with at least one column: a label per row from ``table``, or a bad answer."""
    state = {"calls": 0}

    def predict(X):
        X = np.real(np.asarray(X, dtype=complex if np.asarray(X).dtype.kind == "c" else float)).reshape(len(X), -1)
        codes = (np.nan_to_num(X[:, 0]) > 0.5).astype(int) + (np.nan_to_num(X[:, -1]) > 0.5).astype(int)
        labels = table[codes]
        state["calls"] += 1
        if shape == "too_short":
            return labels[:-1]
        if shape == "too_long":
            return np.concatenate([labels, labels[:1]])
        if shape == "probabilities":
            return np.eye(3)[codes]
        if shape == "scalar":
            return labels[0]
        if shape == "raises":
            raise ZeroDivisionError("the model fell over")
        if shape == "alternating":  # one batch of strings, the next of numbers
            return labels.astype(str) if state["calls"] % 2 else codes
        return labels

    return predict


FLOAT_ARRAYS = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64]),
    shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=12),
    elements=st.floats(-2, 2, width=32) | st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1.0]),
)

FINITE_ARRAYS = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64]),
    shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=2, max_side=16),
    elements=st.floats(0, 1, width=32),
    fill=st.nothing(),  # every element drawn, so that rows differ and the teacher answers several classes
)

ANY_ARRAYS = FLOAT_ARRAYS | hnp.arrays(
    dtype=st.sampled_from([np.int64, np.uint8, np.bool_, np.complex128, np.dtype("U3"), np.dtype(object)]),
    shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=8),
)


@PROPERTY
@given(X=ANY_ARRAYS, table=LABEL_TABLES, shape=ANSWER_SHAPES, cache=st.booleans())
def test_teacher_predict_gives_labels_or_a_clear_error(X, table, shape, cache):
    teacher = Teacher(make_teacher_fn(table, shape), batch_size=5, cache=cache)
    labels = run(lambda: teacher.predict(X))
    if labels is not None:
        assert labels.shape == (len(X),)
        assert teacher.n_queries + teacher.n_cache_hits == len(X)
        if cache:  # what was answered is answered again, the same, from the cache
            np.testing.assert_array_equal(teacher.predict(X), labels)
            assert teacher.n_cache_hits >= len(X)


@PROPERTY
@given(X=FINITE_ARRAYS | FLOAT_ARRAYS, table=LABEL_TABLES, shape=ANSWER_SHAPES)
def test_labeler_fit_and_transform_give_soft_labels_or_a_clear_error(X, table, shape):
    labeler = DecisionBoundarySoftLabeler(
        Teacher(make_teacher_fn(table, shape), batch_size=16), n_directions=2, max_queries_per_sample=60, random_state=0
    )
    soft = run(lambda: labeler.fit(X).transform(X))
    if soft is not None:
        assert soft.shape == (len(X), len(labeler.classes_))
        assert np.isfinite(soft).all()
        np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(PROPERTY, max_examples=40)
@given(X=FINITE_ARRAYS | FINITE_ARRAYS | FLOAT_ARRAYS, table=LABEL_TABLES, shape=ANSWER_SHAPES)
def test_distiller_fit_gives_a_student_or_a_clear_error(X, table, shape):
    labeler = DecisionBoundarySoftLabeler(n_directions=2, max_queries_per_sample=60, random_state=0)
    distiller = DB3Distiller(
        Teacher(make_teacher_fn(table, shape), batch_size=16), soft_labeler=labeler, max_epochs=1, random_state=0
    )
    fitted = run(lambda: distiller.fit(X))
    if fitted is not None:
        predicted = fitted.predict(np.nan_to_num(X))
        assert predicted.shape == (len(X),)
        assert set(np.unique(predicted).tolist()) <= set(fitted.classes_.tolist())
