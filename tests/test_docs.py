"""The docs' printed outputs are what their code prints (the quick start's first step, run as written)."""

import contextlib
import io
import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def blocks(path):
    """The page's code blocks in order, as (language, text) pairs."""
    text = path.read_text()
    found = re.findall(r"\.\. code-block:: (\w+)\n\n((?:(?:   .*)?\n)+)", text)
    return [(language, "\n".join(line[3:] for line in body.splitlines())) for language, body in found]


def test_the_quick_starts_first_step_prints_what_the_page_shows():
    page = blocks(ROOT / "docs" / "quickstart.rst")
    (language, code), (out_language, shown) = page[0], page[1]
    assert (language, out_language) == ("python", "text")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "quickstart.rst", "exec"), {})
    got, expected = printed.getvalue().split(), shown.split()
    assert len(got) == len(expected) == 3
    # fidelity and accuracy (another thread count may move the last digits), then the exact query count
    np.testing.assert_allclose([float(v) for v in got[:2]], [float(v) for v in expected[:2]], atol=0.004)
    assert got[2] == expected[2]
