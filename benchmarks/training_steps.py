"""Benchmark h, the training length of image students: the quick start's setting at two step counts.

The quick start's first step (an RBF SVC teacher on scikit-learn's 8x8 digits, scaled to [0, 1],
fitted on the first 1,000; ``DB3Distiller(teacher, random_state=seed).fit(X[:500])``, the
default MLP student; scored on the 797 digits from 1,000 on) with the library's defaults, but for
the number of steps of 256 rows that an image student trains for on the transfer set and the
queried rows (``_IMAGE_QUERIED_STEPS``, 10,000 since this benchmark; 3,000 before). The teacher's
answers are the same at every step count (one cached ``Teacher``), so each seed's students differ
in their training alone. ``--averages`` sets the decays of a moving average of the student's
weights that it keeps at the end instead of the last step's (``_IMAGE_WEIGHT_AVERAGE``, off by
default: see benchmarks/README.md, section h); ``--active`` the share of the mixtures picked where
a first student is least sure (``_IMAGE_ACTIVE_SHARE``, half by default) and ``--budgets`` the
queries per digit that buy them. The query counts are those the cached teacher had not answered
before in the run (a seed's random mixtures repeat across its rows).

    python benchmarks/training_steps.py                          # 3,000 and 10,000 steps, 6 seeds: about 10 minutes
    python benchmarks/training_steps.py --steps 3000 --seeds 1   # one student
    python benchmarks/training_steps.py --steps 10000 --averages 0 0.999 --tag training_steps_average
    python benchmarks/training_steps.py --steps 10000 --budgets 400 --averages 0 swa --active 0 0.5 --seeds 4 \
        --tag training_steps_active_400

Results: ``results/<tag>.csv`` (every seed) and ``results/<tag>_summary.csv`` (means).
"""

import argparse
import itertools
import sys
import time
from pathlib import Path

from sklearn.datasets import load_digits
from sklearn.svm import SVC

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import db3learn._distiller as distiller_module  # noqa: E402 -- the step count is the variable measured
from benchmarks._common import summarise, write_csv  # noqa: E402
from db3learn import DB3Distiller, Teacher  # noqa: E402

HERE = Path(__file__).resolve().parent


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[3000, 10_000], help="steps of 256 rows")
    parser.add_argument(
        "--averages",
        nargs="+",
        default=[str(distiller_module._IMAGE_WEIGHT_AVERAGE or 0)],
        help="weight averages kept at the end: 0 (the last step's weights), a moving average's decay, or swa "
        "(the uniform average of the second half's steps); default: the library's",
    )
    parser.add_argument(
        "--active",
        type=float,
        nargs="+",
        default=[distiller_module._IMAGE_ACTIVE_SHARE],
        help="shares of the mixtures picked where a first student is least sure (default: the library's)",
    )
    parser.add_argument(
        "--budgets",
        type=int,
        nargs="+",
        default=[0],
        help="max_queries_per_sample (0: none, the library's default; a budget buys mixtures)",
    )
    parser.add_argument("--seeds", type=int, default=6, help="student seeds per step count (default 6)")
    parser.add_argument("--out", default=str(HERE / "results"), help="folder for the CSV files")
    parser.add_argument("--tag", default="training_steps", help="name of the CSV files (default: training_steps)")
    args = parser.parse_args(argv)

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    teacher = Teacher(SVC().fit(X[:1000], y[:1000]))
    X_test, y_test = X[1000:], y[1000:]
    records = []
    defaults = {
        name: getattr(distiller_module, name)
        for name in ("_IMAGE_QUERIED_STEPS", "_IMAGE_WEIGHT_AVERAGE", "_IMAGE_ACTIVE_SHARE")
    }
    try:
        grid = itertools.product(args.budgets, args.steps, args.averages, args.active, range(args.seeds))
        for budget, steps, average, active, seed in grid:
            distiller_module._IMAGE_QUERIED_STEPS = steps
            distiller_module._IMAGE_WEIGHT_AVERAGE = average if average == "swa" else float(average) or None
            distiller_module._IMAGE_ACTIVE_SHARE = active
            start = time.perf_counter()
            student = DB3Distiller(teacher, max_queries_per_sample=budget or None, random_state=seed).fit(X[:500])
            row = dict(
                budget=budget,
                steps=steps,
                weight_average=average,
                active=active,
                seed=seed,
                n_queries=student.n_queries_,
                epochs=student.student_.max_epochs,
                n_queried_rows=student.n_queried_rows_,
                accuracy=student.score(X_test, y_test),
                fidelity=student.score(X_test),
                fit_seconds=round(time.perf_counter() - start, 1),
            )
            records.append(row)
            print(row, flush=True)
    finally:
        for name, value in defaults.items():
            setattr(distiller_module, name, value)
    write_csv(Path(args.out) / f"{args.tag}.csv", records)
    keys = ["budget", "steps", "weight_average", "active"]
    summary = summarise(records, keys, ["n_queries", "epochs", "accuracy", "fidelity", "fit_seconds"])
    print(
        f"\n{'budget':>7}{'steps':>7}{'average':>9}{'active':>7}{'queries':>9}{'accuracy':>10}{'fidelity':>10}", end=""
    )
    print(f"{'std':>7}{'fit (s)':>9}")
    for row in summary:
        print(
            f"{row['budget']:>7}{row['steps']:>7}{row['weight_average']:>9}{row['active']:>7}{row['n_queries']:>9.0f}"
            f"{row['accuracy']:>10.2%}{row['fidelity']:>10.2%}{row['fidelity_std']:>7.2%}{row['fit_seconds']:>9.1f}"
        )
    write_csv(Path(args.out) / f"{args.tag}_summary.csv", summary)


if __name__ == "__main__":
    main()
