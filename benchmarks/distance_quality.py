"""Benchmark b: boundary-distance quality vs queries, against exact distances.

Teacher: a multinomial LogisticRegression on scikit-learn's digits scaled to [0, 1]. The
targeted distance from x into class j's region inside the box [0, 1]^64 is a small QP,
solved exactly with scipy. For each method and budget (queries per (sample, class) pair),
the ratio estimate / exact over every (sample, other class) pair of the held-out samples.
The adversarial-robustness-toolbox's HopSkipJump (targeted, L2, started from the same
nearest reference of the target class) runs in the same process as the peer; its budget is
set through max_iter / max_eval / init_eval, and the queries it actually spent are reported.

    python benchmarks/distance_quality.py           # 10 samples (90 pairs)
    python benchmarks/distance_quality.py --quick   # 3 samples
"""

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import write_csv  # noqa: E402
from db3learn import DecisionBoundarySoftLabeler, Teacher  # noqa: E402

HERE = Path(__file__).resolve().parent
BUDGETS = (100, 300, 1000)


def exact_distance(lr, x, j):
    W, c = lr.coef_, lr.intercept_
    others = [k for k in range(len(W)) if k != j]
    A = np.array([W[j] - W[k] for k in others])
    b = np.array([c[j] - c[k] for k in others])
    res = minimize(
        lambda z: 0.5 * np.sum((z - x) ** 2),
        x,
        jac=lambda z: z - x,
        bounds=[(0.0, 1.0)] * len(x),
        constraints=[{"type": "ineq", "fun": lambda z: A @ z + b, "jac": lambda z: A}],
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 1000},
    )
    assert res.success, res.message
    return float(np.linalg.norm(res.x - x))


def run_ours(lr, refs, samples, params):
    teacher = Teacher(lr, cache=False)
    lab = DecisionBoundarySoftLabeler(teacher, feature_range=(0.0, 1.0), random_state=0, **params).fit(refs)
    start = time.perf_counter()
    D, queries = lab.boundary_distances(samples, return_queries=True)
    return D, queries.sum() / (len(samples) * 9), time.perf_counter() - start


def run_art(lr, refs, samples, own, budget):
    """ART's targeted HopSkipJump on every (sample, class) pair; the most iterations that fit the budget."""
    from art.attacks.evasion import HopSkipJump
    from art.estimators.classification import BlackBoxClassifier

    calls = {"rows": 0}

    def predict(X):
        calls["rows"] += len(X)
        return np.eye(10)[lr.predict(X.reshape(len(X), -1))]

    clf = BlackBoxClassifier(predict, input_shape=(64,), nb_classes=10, clip_values=(0.0, 1.0))
    ref_labels = lr.predict(refs)
    xs, targets, inits = [], [], []
    for i, x in enumerate(samples):
        for j in range(10):
            if j == own[i]:
                continue
            cand = refs[ref_labels == j]
            xs.append(x)
            targets.append(j)
            inits.append(cand[np.argmin(np.linalg.norm(cand - x, axis=1))])
    xs, targets, inits = np.array(xs), np.array(targets), np.array(inits)
    best = None
    for max_iter in range(1, 64):
        init_eval = max(4, budget // 10)
        attack = HopSkipJump(
            clf,
            targeted=True,
            norm=2,
            max_iter=max_iter,
            max_eval=max(init_eval, budget // 3),
            init_eval=init_eval,
            init_size=1,
            batch_size=256,
            verbose=False,
        )
        calls["rows"] = 0
        start = time.perf_counter()
        adv = attack.generate(xs, y=np.eye(10)[targets], x_adv_init=inits)
        seconds = time.perf_counter() - start
        spent = calls["rows"] / len(xs)
        if spent > budget and best is not None:
            break
        reached = lr.predict(adv) == targets
        dist = np.where(reached, np.linalg.norm(adv - xs, axis=1), np.inf)
        best = (dist, spent, seconds, max_iter)
        if spent > budget:
            break
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--replot", action="store_true", help="redraw the figure from the CSV in --out; run nothing")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = "distance_quality_quick" if args.quick else "distance_quality"
    if args.replot:
        with open(out / f"{tag}.csv", newline="") as f:
            rows = [
                {k: (float(v) if k.endswith(("_pair", "_ratio")) and v else v) for k, v in r.items()}
                for r in csv.DictReader(f)
            ]
        plot(rows, out / f"{tag}.png")
        return

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    lr = LogisticRegression(max_iter=2000).fit(X[:1000], y[:1000])
    refs, samples = X[:1000], X[1000 : 1000 + (3 if args.quick else 10)]
    own = lr.predict(samples)
    pairs = [(i, j) for i in range(len(samples)) for j in range(10) if j != own[i]]
    exact = np.array([exact_distance(lr, samples[i], j) for i, j in pairs])

    rows = []

    def add(method, budget, dist, per_pair, seconds, note=""):
        ratio = np.asarray(dist) / exact
        row = dict(
            method=method,
            budget_per_pair=budget,
            queries_per_pair=round(float(per_pair), 1),
            median_ratio=float(np.median(ratio)),
            p90_ratio=float(np.quantile(ratio, 0.9)),
            min_ratio=float(ratio.min()),
            max_ratio=float(ratio.max()),
            found=float(np.isfinite(ratio).mean()),
            seconds=round(seconds, 2),
            note=note,
        )
        rows.append(row)
        print(row, flush=True)

    def pick(D):
        return [D[i, j] for i, j in pairs]

    for method, params in (("sd", dict(method="sd")), ("bd", dict(method="bd")), ("plane", dict(method="plane"))):
        D, per_pair, s = run_ours(lr, refs, samples, params)
        add(method, "", pick(D), per_pair, s, "the default" if method == "plane" else "")
    for budget in BUDGETS:
        for method in ("hsj", "mbd"):
            params = dict(method=method, n_directions=3, max_queries_per_sample=9 * budget)
            D, per_pair, s = run_ours(lr, refs, samples, params)
            add(f"db3learn {method}", budget, pick(D), per_pair, s, "BD (3 directions) included")
        # plane: as many directions as the budget pays for (6 queries each, plus 12 for the search along the normal)
        k = max(2, (budget - 12) // 6)
        D, per_pair, s = run_ours(
            lr, refs, samples, dict(method="plane", n_directions=k, max_queries_per_sample=9 * budget)
        )
        add(
            "db3learn plane", budget, pick(D), per_pair, s, f"{k} directions (fewer where a class has fewer references)"
        )
        dist, spent, s, it = run_art(lr, refs, samples, own, budget)
        add("ART HopSkipJump", budget, dist, spent, s, f"max_iter={it}")
    D, per_pair, s = run_ours(lr, refs, samples, dict(method="mbd"))
    add("db3learn mbd", 20000, pick(D), per_pair, s, "paper defaults: BD (10 directions) + 20,000 per pair")

    write_csv(out / f"{tag}.csv", rows)
    print(f"\n{'method':<18}{'budget':>8}{'queries':>9}{'median':>8}{'p90':>7}{'min':>7}{'max':>7}{'time s':>8}")
    for r in rows:
        print(
            f"{r['method']:<18}{str(r['budget_per_pair']):>8}{r['queries_per_pair']:>9.0f}{r['median_ratio']:>8.3f}"
            f"{r['p90_ratio']:>7.3f}{r['min_ratio']:>7.3f}{r['max_ratio']:>7.3f}{r['seconds']:>8.1f}"
        )
    plot(rows, out / f"{tag}.png")


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    from db3learn.plotting import plot_quality_vs_queries

    (ax,) = plot_quality_vs_queries(
        rows,
        metrics=("median_ratio",),
        queries="queries_per_pair",
        references=(),
        title="Linear teacher (digits): distance quality vs queries",
    )
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xlabel("teacher queries per (sample, class) pair")
    ax.set_ylabel("median estimate / exact distance")
    ax.figure.savefig(path, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
