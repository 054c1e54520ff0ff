"""The README's example files, and its serve + distill commands."""

import re
import shlex
import sys
from pathlib import Path

import numpy as np

from db3learn.cli import build_parser
from db3learn.distill import load_data
from db3learn.io import load_model

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_example_files_are_what_make_examples_makes():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from make_examples import make_teacher_and_data
    finally:
        sys.path.pop(0)
    teacher, data = make_teacher_and_data()
    np.testing.assert_array_equal(load_data(ROOT / "examples" / "digits.csv"), data)
    shipped = load_model(ROOT / "examples" / "digits-svc.skops")  # skops trusts every type in it
    np.testing.assert_array_equal(shipped.predict(data), teacher.predict(data))


def test_readme_serve_and_distill_commands_parse_and_match():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Distill a model behind an HTTP API", 1)[1].split("\n## ", 1)[0]
    commands = [
        shlex.split(line.split("&&")[-1].split("#")[0])
        for line in section.splitlines()
        if re.search(r"\bdb3learn (serve|distill) ", line)
    ]
    serve, distill = (next(c for c in commands if c[1] == verb) for verb in ("serve", "distill"))
    serve_args, distill_args = build_parser().parse_args(serve[1:]), build_parser().parse_args(distill[1:])
    assert (ROOT / serve_args.model).is_file() and (ROOT / distill_args.data).is_file()
    served_as = f"http://{serve_args.host}:{serve_args.port}/v2/models/{Path(serve_args.model).stem}"
    assert distill_args.teacher == served_as
