import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.svm import SVC
from skorch import NeuralNetClassifier

from db3learn import (
    DB3Distiller,
    DecisionBoundarySoftLabeler,
    QueryBudgetExceeded,
    Teacher,
    TeacherAnswerError,
    TeacherError,
)
from db3learn.models import MLP

from .conftest import CountingModel

FAST = dict(max_epochs=40, random_state=0)


def _labeler(**kw):
    return DecisionBoundarySoftLabeler(n_directions=3, **kw)


def test_end_to_end_on_digits_beats_the_copycat(digits, svc):
    X, _, X_test, y_test = digits
    X_transfer = X[:200]
    student = DB3Distiller(Teacher(svc), soft_labeler=_labeler(), temperature=0.5, max_epochs=100, random_state=0)
    student.fit(X_transfer)
    copycat = DB3Distiller(Teacher(svc), kd_weight=0, max_epochs=100, random_state=0).fit(X_transfer)
    fidelity, copy_fidelity = student.score(X_test), copycat.score(X_test)
    assert fidelity > 0.85  # chance is 0.1
    assert fidelity > copy_fidelity + 0.01
    assert student.score(X_test, y_test) > copycat.score(X_test, y_test)
    assert copycat.n_queries_ == 200  # a copycat pays for the labels only
    assert student.soft_labeler_ is not None and copycat.soft_labeler_ is None


def test_n_queries_is_what_the_teacher_received(digits, svc):
    model = CountingModel(svc)
    d = DB3Distiller(model, soft_labeler=_labeler(), max_epochs=2).fit(digits[0][:100])
    assert d.n_queries_ == model.rows > 100
    rows = model.rows
    d.fit(digits[0][:100])  # everything is cached now
    assert d.n_queries_ == 0 and model.rows == rows


def test_pipeline_after_a_scaler(digits):
    X, y, X_test, _ = digits
    scaler = StandardScaler().fit(X)
    # the teacher reads scaled inputs: it undoes the scaling, then asks an SVC trained on raw digits
    raw_svc = SVC().fit(X, y)
    teacher = make_pipeline(FunctionTransformer(scaler.inverse_transform), raw_svc)
    pipe = make_pipeline(StandardScaler(), DB3Distiller(teacher, soft_labeler=_labeler(), **FAST)).fit(X[:300])
    agreement = np.mean(pipe.predict(X_test) == raw_svc.predict(X_test))
    assert agreement > 0.85


def test_grid_search_over_temperature_reuses_answers_and_distances(digits, svc):
    X = digits[0][:150]
    single = CountingModel(svc)
    DB3Distiller(single, soft_labeler=_labeler(), max_epochs=5, random_state=0).fit(X)
    counting = CountingModel(svc)
    # as the docs search: the soft labels on the transfer set alone; each fold reuses the first fit's distances
    search = GridSearchCV(
        DB3Distiller(counting, soft_labeler=_labeler(), queried_rows=False, max_epochs=5, random_state=0),
        {"temperature": [0.25, 0.5, 1.0, 2.0]},
        cv=3,
    ).fit(X)
    assert len(search.cv_results_["params"]) == 4
    assert 0 < counting.rows <= 1.5 * single.rows
    assert 0 <= search.best_score_ <= 1  # fidelity on each held-out fold


def test_string_labels(digits):
    X, y, X_test, y_test = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    teacher = SVC().fit(X, names[y])
    d = DB3Distiller(teacher, soft_labeler=_labeler(), **FAST).fit(X[:200])
    assert d.classes_.tolist() == sorted(names.tolist())
    pred = d.predict(X_test)
    assert pred.dtype.kind == "U" and set(pred) <= set(names)
    assert d.score(X_test, names[y_test]) > 0.8
    assert d.predict_proba(X_test).shape == (len(X_test), 10)


def test_random_state_makes_fit_reproducible(digits, svc):
    X = digits[0][:150]
    a = DB3Distiller(
        Teacher(svc), soft_labeler=_labeler(reference_selection="random"), max_epochs=5, random_state=3
    ).fit(X)
    b = DB3Distiller(
        Teacher(svc), soft_labeler=_labeler(reference_selection="random"), max_epochs=5, random_state=3
    ).fit(X)
    np.testing.assert_array_equal(a.predict_proba(digits[2]), b.predict_proba(digits[2]))
    assert a.n_queries_ == b.n_queries_
    c = DB3Distiller(
        Teacher(svc), soft_labeler=_labeler(reference_selection="random"), max_epochs=5, random_state=4
    ).fit(X)
    assert not np.array_equal(a.predict_proba(digits[2]), c.predict_proba(digits[2]))


def test_the_default_adam_is_fused_and_takes_the_same_steps(digits, svc):
    # torch's fused Adam (CPU from torch 2.4): one kernel per step instead of one per tensor, the same update
    from db3learn._distiller import _fused_adam_on_cpu

    X = digits[0][:100]
    teacher = Teacher(svc)
    fused = DB3Distiller(teacher, kd_weight=0, max_epochs=5, random_state=0).fit(X)
    plain = DB3Distiller(teacher, kd_weight=0, optimizer=torch.optim.Adam, max_epochs=5, random_state=0).fit(X)
    assert plain.student_.optimizer_.defaults["fused"] is None  # an optimizer given is taken as given
    assert fused.student_.optimizer_.defaults["fused"] is (True if _fused_adam_on_cpu() else None)
    np.testing.assert_allclose(fused.predict_proba(digits[2]), plain.predict_proba(digits[2]), atol=1e-4)
    sgd = DB3Distiller(teacher, kd_weight=0, optimizer=torch.optim.SGD, max_epochs=1).fit(X)
    assert "fused" not in sgd.student_.optimizer_.defaults or not sgd.student_.optimizer_.defaults["fused"]


def test_student_module_class_instance_and_skorch_net(digits, svc):
    X = digits[0][:120]
    teacher = Teacher(svc)
    small = DB3Distiller(teacher, soft_labeler=_labeler(), max_epochs=2, student__hidden_units=(7,)).fit(X)
    assert small.student_.module_.net[0].out_features == 7
    small.set_params(student__hidden_units=(5, 4))
    assert small.get_params()["student__hidden_units"] == (5, 4)
    small.fit(X)
    assert [m.out_features for m in small.student_.module_.net if hasattr(m, "out_features")] == [5, 4, 10]

    instance = MLP(64, 10, hidden_units=(9,))
    by_instance = DB3Distiller(teacher, student=instance, soft_labeler=_labeler(), max_epochs=2).fit(X)
    assert by_instance.student_.module_.net[0].out_features == 9

    net = NeuralNetClassifier(
        MLP, module__n_features=64, module__n_classes=10, module__hidden_units=(11,), max_epochs=3, lr=0.01
    )
    by_net = DB3Distiller(teacher, student=net, soft_labeler=_labeler()).fit(X)
    assert by_net.student_.module_.net[0].out_features == 11
    assert by_net.student_.max_epochs == 3 and by_net.student_.lr == 0.01
    assert len(by_net.student_.history) == 3
    overridden = DB3Distiller(teacher, student=net, soft_labeler=_labeler(), max_epochs=1).fit(X)
    assert len(overridden.student_.history) == 1


def test_unknown_keyword_is_a_clear_error(svc, digits):
    with pytest.raises(TypeError, match="extra arguments must be student__<name>=value"):
        DB3Distiller(svc, hidden=3).fit(digits[0][:20])


def test_clone_keeps_the_fitted_teacher_and_shares_its_caches(digits, svc):
    d = DB3Distiller(svc, soft_labeler=_labeler(), max_epochs=2)
    twin = clone(d)
    assert twin.teacher is svc and hasattr(svc, "support_vectors_")  # not reset
    assert twin._get_teacher() is d._get_teacher()
    twin.fit(digits[0][:60])
    assert clone(d).fit(digits[0][:60]).n_queries_ == 0


def test_predict_before_fit(svc, digits):
    with pytest.raises(NotFittedError):
        DB3Distiller(svc).predict(digits[0][:2])


def test_nan_and_wrong_n_features_are_clear_errors(digits, svc):
    X = digits[0][:50].copy()
    X[3, 5] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        DB3Distiller(svc).fit(X)
    d = DB3Distiller(svc, soft_labeler=_labeler(), max_epochs=1).fit(digits[0][:50])
    with pytest.raises(ValueError, match="X has 5 features, but DB3Distiller is expecting 64 features"):
        d.predict(np.zeros((2, 5)))


def test_teacher_that_raises_keeps_what_was_paid_for(digits, svc):
    X = digits[0][:80]
    state = {"fail": True, "rows": 0}

    def flaky(Z):
        if state["fail"] and state["rows"] >= 500:
            raise RuntimeError("quota exceeded upstream")
        state["rows"] += len(Z)
        return svc.predict(Z)

    teacher = Teacher(flaky, batch_size=100)
    with pytest.raises(TeacherError, match="RuntimeError: quota exceeded upstream.*are cached"):
        DB3Distiller(teacher, soft_labeler=_labeler(), max_epochs=1, random_state=0).fit(X)
    paid = state["rows"]
    assert paid >= 500
    state["fail"] = False
    d = DB3Distiller(teacher, soft_labeler=_labeler(), max_epochs=1, random_state=0).fit(X)
    fresh = CountingModel(svc)
    DB3Distiller(fresh, soft_labeler=_labeler(), max_epochs=1, random_state=0).fit(X)
    assert d.n_queries_ + paid == fresh.rows  # no row was asked twice


def test_exhausted_budget_then_resume_without_repeats(digits, svc):
    X = digits[0][:80]
    fresh = CountingModel(svc)
    DB3Distiller(fresh, soft_labeler=_labeler(), max_epochs=1, random_state=0).fit(X)
    model = CountingModel(svc)
    teacher = Teacher(model, max_queries=fresh.rows // 2)
    with pytest.raises(QueryBudgetExceeded, match=f"max_queries={fresh.rows // 2:,} rows"):
        DB3Distiller(teacher, soft_labeler=_labeler(), max_epochs=1, random_state=0).fit(X)
    assert model.rows == fresh.rows // 2  # the whole budget was spent, and kept
    teacher.max_queries = None
    d = DB3Distiller(teacher, soft_labeler=_labeler(), max_epochs=1, random_state=0).fit(X)
    assert model.rows == fresh.rows
    assert d.n_queries_ == fresh.rows - fresh.rows // 2


def test_wrong_length_answers(digits):
    teacher = Teacher(lambda Z: np.zeros(len(Z) + 1, dtype=int))
    with pytest.raises(TeacherAnswerError, match=r"one label per row, an array of shape \(40,\)"):
        DB3Distiller(teacher).fit(digits[0][:40])


def test_labels_unseen_in_fit_are_a_clear_error_and_stay_cached(digits):
    X = digits[0]
    calls = []

    def teacher(Z):
        calls.append(len(Z))
        return (Z[:, 20] > 0.5).astype(int) + 2 * (Z[:, 0] > 0.1)  # class 2+ only where pixel 0 is lit

    labeler = DecisionBoundarySoftLabeler(teacher, n_directions=2).fit(X[:100][X[:100, 0] <= 0.1])
    assert labeler.classes_.tolist() == [0, 1]
    Z = X[100:200]
    new = Z[Z[:, 0] > 0.1] if (Z[:, 0] > 0.1).any() else np.vstack([Z[:1] + 0.2])
    with pytest.raises(TeacherAnswerError, match=r"classes not seen when the labeler was fit \(classes_=\[0, 1\]\)"):
        labeler.transform(new)
    n = sum(calls)
    with pytest.raises(TeacherAnswerError):
        labeler.transform(new)
    assert sum(calls) == n


def test_labeler_temperature_reuses_distances(digits, svc):
    X = digits[0][:100]
    model = CountingModel(svc)
    labeler = DecisionBoundarySoftLabeler(model, n_directions=3).fit(X)
    P1 = labeler.transform(X)
    rows = model.rows
    P2 = labeler.set_params(temperature=5.0).transform(X)
    assert model.rows == rows
    assert np.all(P2.max(1) < P1.max(1))
    np.testing.assert_array_equal(P1.argmax(1), np.searchsorted(labeler.classes_, svc.predict(X)))
    np.testing.assert_allclose(P1.sum(1), 1)


def test_labeler_needs_a_teacher(digits):
    with pytest.raises(ValueError, match="DecisionBoundarySoftLabeler needs a teacher"):
        DecisionBoundarySoftLabeler().fit(digits[0][:10])


def test_feature_range_validation(digits, svc):
    with pytest.raises(ValueError, match=r"feature_range low must be a float or an array of shape \(64,\)"):
        DecisionBoundarySoftLabeler(svc, feature_range=(np.zeros(3), 1.0)).fit(digits[0][:10])
    with pytest.raises(ValueError, match="low <= high"):
        DecisionBoundarySoftLabeler(svc, feature_range=(1.0, 0.0)).fit(digits[0][:10])
    lab = DecisionBoundarySoftLabeler(svc, feature_range="per_feature").fit(digits[0][:10])
    assert lab.feature_range_[0].shape == (64,)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_student_and_torch_teacher_on_cuda(digits):
    from db3learn import TorchTeacher

    X, y = digits[0], digits[1]
    torch.manual_seed(0)
    module = MLP(64, 10, hidden_units=(32,)).cuda()
    opt = torch.optim.Adam(module.parameters(), lr=1e-2)
    Xt, yt = torch.tensor(X, dtype=torch.float32).cuda(), torch.tensor(y).cuda()
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(module(Xt), yt).backward()
        opt.step()
    teacher = TorchTeacher(module)
    d = DB3Distiller(teacher, soft_labeler=_labeler(), device="cuda", max_epochs=20, random_state=0).fit(X[:300])
    assert next(d.student_.module_.parameters()).is_cuda
    assert d.score(digits[2]) > 0.7
