"""`db3learn distill`: data files, teachers by URL or file, budgets, and a client killed mid-run."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from db3learn import QueryBudgetExceeded, RemoteTeacher, Teacher
from db3learn.cli import build_parser, main
from db3learn.distill import load_data, make_teacher, run_distill
from db3learn.io import load_student
from db3learn.serve import create_app

from .servers import ServeProcess, free_port, read_ledger, thread_server, wait_until

SMALL = ["--n-directions", "2", "--epochs", "3", "--holdout", "0.25", "--quiet"]


@pytest.fixture(scope="module")
def data_file(digits, tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "digits.npy"
    np.save(path, digits[2][:120])
    return path


@pytest.fixture(scope="module")
def fresh(svc, data_file, tmp_path_factory):
    """The same run, asking the model itself directly: what every resumed run must equal."""
    out = tmp_path_factory.mktemp("fresh")
    report = run_distill(Teacher(svc), data_file, out, n_directions=2, epochs=3, holdout=0.25, verbose=False)
    return report, load_student(out)


def test_load_data_reads_npy_and_csv_with_or_without_header(tmp_path):
    X = np.array([[0.5, 1.0, 2.0], [3.0, 4.25, 5.0]])
    np.save(tmp_path / "a.npy", X)
    np.savetxt(tmp_path / "b.csv", X, delimiter=",")
    np.savetxt(tmp_path / "c.csv", X, delimiter=",", header="f0,f1,f2", comments="")
    for name in ("a.npy", "b.csv", "c.csv"):
        np.testing.assert_array_equal(load_data(tmp_path / name), X)
    (tmp_path / "d.csv").write_text("a,b\n1,x\n")  # a text column: a DataFrame, strings kept
    table = load_data(tmp_path / "d.csv")
    assert list(table.columns) == ["a", "b"] and table["b"].tolist() == ["x"] and table["a"].dtype.kind == "i"
    (tmp_path / "g.csv").write_text("age,income,2020\n1,2.5,3\n4,5.5,6\n")  # a column named like a number
    np.testing.assert_array_equal(load_data(tmp_path / "g.csv"), [[1, 2.5, 3], [4, 5.5, 6]])
    (tmp_path / "i.csv").write_text("region,2020\nnorth,3\n")
    assert load_data(tmp_path / "i.csv").columns.tolist() == ["region", "2020"]
    (tmp_path / "j.csv").write_text("1,2\n3,x\n")  # no header, and text among the numbers
    with pytest.raises(ValueError, match="must hold numbers separated by commas, or start with a header row"):
        load_data(tmp_path / "j.csv")
    (tmp_path / "h.csv").write_text("a,b\n1,x\n2,\n")
    with pytest.raises(ValueError, match=r"missing values in the columns \['b'\]"):
        load_data(tmp_path / "h.csv")
    np.save(tmp_path / "e.npy", np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        load_data(tmp_path / "e.npy")
    (tmp_path / "f.txt").write_text("1,2")
    with pytest.raises(ValueError, match=r"must be \.npy, \.csv or \.parquet; got f\.txt"):
        load_data(tmp_path / "f.txt")


def test_teacher_urls_name_the_model_protocol_and_version(svc_file):
    t = make_teacher("http://127.0.0.1:8080/serving/v1/models/digits/versions/2")
    assert (t.base_url, t.model_name, t.protocol, t.model_version) == (
        "http://127.0.0.1:8080/serving",
        "digits",
        "v1",
        "2",
    )
    t = make_teacher("http://127.0.0.1:8080", model_name="digits", max_queries=10, cache_dir=None)
    assert isinstance(t, RemoteTeacher) and (t.protocol, t.max_queries) == ("v2", 10)
    with pytest.raises(ValueError, match=r"Which model at http://127.0.0.1:8080\? Give its name \(--model-name\)"):
        make_teacher("http://127.0.0.1:8080")
    with pytest.raises(ValueError, match="The URL names the model 'digits' but model_name='other'"):
        make_teacher("http://127.0.0.1:8080/v2/models/digits", model_name="other")
    assert type(make_teacher(svc_file)) is Teacher
    with pytest.raises(ValueError, match="cache_dir keeps the answers of a teacher behind a URL"):
        make_teacher(svc_file, cache_dir="somewhere")


def test_distill_a_saved_model_from_the_command_line(svc, svc_file, data_file, fresh, tmp_path, capsys):
    out = tmp_path / "student"
    assert main(["distill", "--teacher", str(svc_file), "--data", str(data_file), "--out", str(out), *SMALL]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == {**json.loads((out / "report.json").read_text()), "time_s": report["time_s"]}
    assert (report["n_rows"], report["n_train"], report["n_holdout"], report["n_classes"]) == (120, 90, 30, 10)
    assert report["queries"] == fresh[0].queries > 90 and report["queries_holdout"] == 30
    assert report["requests"] is None and report["fidelity"] == fresh[0].fidelity
    student = load_student(out)
    np.testing.assert_array_equal(student.predict(np.load(data_file)), fresh[1].predict(np.load(data_file)))
    assert report["epochs"] == 3  # the epochs trained
    # without --epochs the library's own training length (about 10,000 steps on images), not a fixed count
    args = build_parser().parse_args(["distill", "--teacher", str(svc_file), "--data", str(data_file), "--out", "x"])
    assert args.epochs is None
    assert report["method"] == "bd" and report["mixtures"] == 0 and report["temperature"] > 0  # --n-directions: BD


def test_distill_without_a_search_option_spends_the_budget_on_mixtures_as_the_library_does(svc, data_file, tmp_path):
    # no --method, --temperature or --n-directions: DB3Distiller's defaults, teacher-labelled mixtures of the rows
    teacher = Teacher(svc)
    report = run_distill(teacher, data_file, tmp_path / "s", queries_per_sample=5, epochs=3, verbose=False)
    n = report.n_train
    assert n == 96 and (report.method, report.temperature, report.mixtures) == ("mixtures", None, n * 4)
    assert n < report.queries - report.queries_holdout <= n * 5  # the labels and the mixtures, within the budget
    args = build_parser().parse_args(["distill", "--teacher", "t", "--data", "d", "--out", "o"])
    assert (args.method, args.n_directions, args.temperature, args.queries_per_sample) == (None, None, None, None)
    searched = run_distill(Teacher(svc), data_file, tmp_path / "b", temperature=0.5, epochs=3, verbose=False)
    assert (searched.method, searched.temperature, searched.mixtures) == ("bd", 0.5, 0)  # a temperature: soft labels


def test_distill_reports_errors_without_a_traceback(tmp_path, capsys):
    assert main(["distill", "--teacher", str(tmp_path / "nope.skops"), "--data", "x.npy", "--out", str(tmp_path)]) == 1
    assert (
        capsys.readouterr().err
        == f"db3learn distill: error: No model at {tmp_path / 'nope.skops'}: expected a .skops file or a student directory.\n"
    )
    with pytest.raises(SystemExit):
        build_parser().parse_args(["distill", "--teacher", "x", "--data", "y", "--out", "z", "--hidden-units", "0"])


def test_budget_exhausted_mid_run_then_resumed_without_repeats(svc, data_file, fresh, tmp_path, capsys):
    ledger = tmp_path / "ledger.txt"
    total = fresh[0].queries
    with thread_server(create_app(svc, model_name="digits", ledger=ledger)) as url:
        args = [
            "distill",
            "--teacher",
            f"{url}/v2/models/digits",
            "--data",
            str(data_file),
            "--cache-dir",
            str(tmp_path / "cache"),
            *SMALL,
        ]
        assert main([*args, "--out", str(tmp_path / "a"), "--max-queries", str(total // 2), "--batch-size", "64"]) == 1
        err = capsys.readouterr().err
        assert f"Query budget exhausted: max_queries={total // 2:,} rows, {total // 2:,} already spent" in err
        assert "Every answer received so far is cached" in err
        assert len(read_ledger(ledger)) == total // 2  # the whole budget was spent, and its answers kept on disk
        # the budget holds across reruns on the same cache directory: the same budget asks nothing more
        assert main([*args, "--out", str(tmp_path / "b"), "--max-queries", str(total // 2)]) == 1
        assert f"{total // 2:,} already spent through its cache_dir" in capsys.readouterr().err
        assert len(read_ledger(ledger)) == total // 2
        # raised to what the whole run needs, exactly, it finishes: nothing is asked twice
        assert main([*args, "--out", str(tmp_path / "b"), "--max-queries", str(total)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["queries"] == total - total // 2 and report["cache_hits"] >= total // 2
    rows = read_ledger(ledger)
    assert len(rows) == len(set(rows)) == total
    np.testing.assert_array_equal(
        load_student(tmp_path / "b").predict(np.load(data_file)), fresh[1].predict(np.load(data_file))
    )


def test_client_killed_mid_labelling_resumes_without_asking_any_row_twice(svc_file, data_file, fresh, tmp_path):
    port, ledger, cache = free_port(), tmp_path / "ledger.txt", tmp_path / "cache"
    command = [
        sys.executable, "-m", "db3learn.cli", "distill",
        "--teacher", f"http://127.0.0.1:{port}/v2/models/digits-svc",
        "--data", str(data_file), "--cache-dir", str(cache), "--out", str(tmp_path / "student"),
        "--batch-size", "32", "--max-concurrency", "2", "--max-retries", "0", *SMALL,
    ]  # fmt: skip
    with ServeProcess(svc_file, port, "--stall-after", 1000, "--ledger", ledger) as server:
        client = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            # two requests held by the server: every earlier answer reached the client and its disk cache
            wait_until(lambda: server.stats()["stalled"] == 2, 60, "the client's two requests to stall")
        finally:
            os.kill(client.pid, signal.SIGKILL)
            client.wait(timeout=20)
        assert client.returncode == -signal.SIGKILL
        paid = len(read_ledger(ledger))
        assert 1000 <= paid < fresh[0].queries
    with ServeProcess(svc_file, port, "--ledger", ledger):
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    rows = read_ledger(ledger)
    assert len(rows) == len(set(rows)) == fresh[0].queries  # 0 rows answered twice, over both runs and servers
    assert report["queries"] == fresh[0].queries - paid and report["cache_hits"] >= paid
    X = np.load(data_file)
    np.testing.assert_array_equal(load_student(tmp_path / "student").predict(X), fresh[1].predict(X))
    assert report["fidelity"] == fresh[0].fidelity


def test_budget_error_from_the_library_says_how_to_resume(svc, data_file, tmp_path):
    with thread_server(create_app(svc, model_name="digits")) as url:
        teacher = RemoteTeacher(url, "digits", max_queries=50, cache_dir=tmp_path)
        with pytest.raises(QueryBudgetExceeded, match=r"raise the budget \(teacher.max_queries = ...\)"):
            run_distill(teacher, data_file, tmp_path / "out", n_directions=2, epochs=1, verbose=False)


def test_a_stray_token_in_a_column_of_numbers_is_refused_with_its_lines(credit, tmp_path):
    """pandas reads a numeric column with one "?" as text; the distiller would make it a category."""
    df = credit[0].head(200)
    df.to_csv(tmp_path / "clean.csv", index=False)
    clean = load_data(tmp_path / "clean.csv")
    assert clean["Income"].dtype.kind in "if" and clean["Home"].dtype.kind in "OT"  # text stays text
    dirty = df.astype({"Income": object})
    dirty.loc[[3, 57], "Income"] = "?"
    dirty.to_csv(tmp_path / "dirty.csv", index=False)
    with pytest.raises(
        ValueError, match=r"column 'Income' holds numbers except for 2 values \['\?'\] \(file lines \[5, 59\]\)"
    ):
        load_data(tmp_path / "dirty.csv")
