"""Budgets, caches and counters shared by threads and processes (issue 17, items 3-7).

Every teacher here is a real fitted model, every server a real ``db3learn
serve`` on 127.0.0.1; the rows a model or a server really received are
counted on its side and compared with what the ``Teacher`` reports.
"""

import pickle
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV

from db3learn import DB3Distiller, DecisionBoundarySoftLabeler, RemoteTeacher, Teacher
from db3learn.exceptions import QueryBudgetExceeded, TeacherError
from db3learn.serve import create_app

from .servers import ServeProcess, free_port, thread_server, wait_until


class SlowCountingModel:
    """A real fitted model that sleeps a little per call (so that threads overlap) and counts rows."""

    def __init__(self, model, delay=0.02, fail_on=None):
        self.model = model
        self.classes_ = model.classes_
        self.delay = delay
        self.fail_on = fail_on  # a row whose batch raises
        self.rows_answered = 0
        self._lock = threading.Lock()

    def predict(self, X):
        time.sleep(self.delay)
        if self.fail_on is not None and (X == self.fail_on).all(axis=1).any():
            raise ValueError("the model cannot answer this batch")
        with self._lock:
            self.rows_answered += len(X)
        return self.model.predict(X)


@pytest.fixture(scope="module")
def logreg(digits):
    X, y, _, _ = digits
    return LogisticRegression(max_iter=300).fit(X, y)


@pytest.fixture(scope="module")
def fresh_rows():
    """8 x 1,000 distinct rows in the digits' input space."""
    return np.random.default_rng(0).random((8, 1000, 64))


def _in_threads(fn, args):
    barrier = threading.Barrier(len(args))

    def run(a):
        barrier.wait()
        try:
            return fn(a)
        except QueryBudgetExceeded as exc:
            return exc

    with ThreadPoolExecutor(len(args)) as pool:
        return list(pool.map(run, args))


def test_threads_cannot_overspend_a_shared_budget(logreg, fresh_rows):
    model = SlowCountingModel(logreg)
    teacher = Teacher(model, batch_size=100, max_queries=2000)
    outcomes = _in_threads(teacher.predict, list(fresh_rows))
    assert model.rows_answered == teacher.n_queries == 2000
    errors = [o for o in outcomes if isinstance(o, QueryBudgetExceeded)]
    assert len(errors) == 6  # two threads get their 1,000 rows; the budget refuses the other six
    assert all(e.n_queries <= 2000 and e.n_requested == 1000 for e in errors)
    for rows, outcome in zip(fresh_rows, outcomes):
        if not isinstance(outcome, Exception):
            np.testing.assert_array_equal(outcome, logreg.predict(rows))


def test_threads_asking_the_same_rows_pay_once(logreg, digits):
    X = digits[0][:500]
    model = SlowCountingModel(logreg)
    teacher = Teacher(model, batch_size=100)
    outcomes = _in_threads(teacher.predict, [X] * 8)
    assert model.rows_answered == teacher.n_queries == 500
    assert teacher.n_cache_hits == 7 * 500
    for labels in outcomes:
        np.testing.assert_array_equal(labels, logreg.predict(X))


def test_a_failed_ask_is_retried_by_the_thread_that_waited_for_it(logreg, digits):
    X = digits[0][:300]
    model = SlowCountingModel(logreg, fail_on=X[10])
    teacher = Teacher(model, batch_size=50)
    outcomes = []
    for _ in range(2):  # the first call fails; then the model is fixed and the rows are asked again
        results = {}

        def ask(i, results=results):
            try:
                results[i] = teacher.predict(X)
            except TeacherError as exc:
                results[i] = exc

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        outcomes.append(results)
        model.fail_on = None
    assert any(isinstance(r, TeacherError) for r in outcomes[0].values())
    for labels in outcomes[1].values():
        np.testing.assert_array_equal(labels, logreg.predict(X))
    assert teacher.n_queries == model.rows_answered == 300  # only answers count; none was paid twice


def test_failed_calls_do_not_count_as_queries(logreg, digits):
    X = digits[0][:400]
    model = SlowCountingModel(logreg, delay=0, fail_on=X[120])  # the third batch of 50 fails
    teacher = Teacher(model, batch_size=50, max_queries=150)
    with pytest.raises(TeacherError):
        teacher.predict(X)
    assert teacher.n_queries == model.rows_answered == 100
    model.fail_on = None
    with pytest.raises(QueryBudgetExceeded, match="max_queries=150 rows, 150 already spent, and 250 rows"):
        teacher.predict(X)  # the failed batch's 50 rows were given back to the budget
    assert teacher.n_queries == model.rows_answered == 150


def _labeler(teacher, n_jobs):
    return DecisionBoundarySoftLabeler(teacher, n_jobs=n_jobs, n_directions=4, max_queries_per_pair=30, random_state=0)


def test_threading_backend_counts_each_row_once_and_keeps_the_budget(logreg, digits):
    X = digits[0][:60]
    serial_model = SlowCountingModel(logreg, delay=0)
    expected = _labeler(Teacher(serial_model, batch_size=256), None).fit(X).boundary_distances(X)
    n_serial = serial_model.rows_answered
    model = SlowCountingModel(logreg, delay=0)
    teacher = Teacher(model, batch_size=256, max_queries=n_serial)  # exactly what the serial run needs
    with joblib.parallel_config(backend="threading"):
        distances = _labeler(teacher, 2).fit(X).boundary_distances(X)
    assert n_serial > 10 * len(X)
    assert teacher.n_queries == model.rows_answered == n_serial
    np.testing.assert_array_equal(distances, expected)


def test_remote_teacher_under_the_threading_backend(logreg, digits):
    X = digits[0][:40]
    with thread_server(create_app(logreg, model_name="digits")) as url:
        teacher = RemoteTeacher(url, "digits", batch_size=128)
        with joblib.parallel_config(backend="threading"):
            labeler = _labeler(teacher, 2).fit(X)
            labeler.boundary_distances(X)
        stats = __import__("httpx").get(f"{url}/db3learn/stats").json()
    np.testing.assert_array_equal(labeler.classes_[labeler.reference_labels_], logreg.predict(X))
    assert teacher.n_queries == stats["rows_answered"] == stats["distinct_rows_answered"] > 10 * len(X)


def test_a_budgeted_teacher_copied_into_worker_processes_refuses_to_spend(logreg, digits):
    X = digits[0][:100]
    teacher = Teacher(logreg, max_queries=4000)
    search = GridSearchCV(
        DB3Distiller(teacher, max_epochs=2, random_state=0),
        {"temperature": [2.0, 4.0]},
        cv=2,
        n_jobs=2,
        error_score="raise",
    )
    with pytest.raises(TeacherError, match=r"max_queries=4,000\) and is a copy made for another process.*threading"):
        search.fit(X)
    assert teacher.n_queries == 0
    # in this process, a pickled copy (same pid) or one whose budget was set again may spend it
    copy = pickle.loads(pickle.dumps(teacher))
    assert len(copy.predict(X[:10])) == 10 and copy.n_queries == 10


def test_a_budgeted_teacher_loaded_in_another_process_can_be_rearmed(logreg, digits, tmp_path):
    path = tmp_path / "teacher.pkl"
    path.write_bytes(pickle.dumps(Teacher(logreg, max_queries=50)))
    np.save(tmp_path / "X.npy", digits[0][:10])
    script = (
        "import pickle, sys, numpy as np\n"
        "from db3learn.exceptions import TeacherError\n"
        f"t = pickle.loads(open({str(path)!r}, 'rb').read()); X = np.load({str(tmp_path / 'X.npy')!r})\n"
        "try:\n    t.predict(X); print('spent')\nexcept TeacherError:\n    print('refused')\n"
        "t.max_queries = 50; t.predict(X); print(t.n_queries)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    ).stdout.split()
    assert out == ["refused", "10"]


def _ask_remote(url, cache_dir, rows):
    teacher = RemoteTeacher(url, "digits", batch_size=500, cache_dir=cache_dir, max_queries=4000)
    try:
        teacher.predict(rows)
        return "answered"
    except QueryBudgetExceeded as exc:
        return f"budget:{exc.n_requested}"
    finally:
        teacher.close()


def test_a_remote_budget_holds_across_processes_and_reruns_through_the_cache_dir(logreg, fresh_rows, tmp_path):
    cache = tmp_path / "cache"
    rows = fresh_rows.reshape(-1, 64)[:6000]
    with thread_server(create_app(logreg, model_name="digits")) as url:
        outcomes = joblib.Parallel(n_jobs=2, backend="loky")(
            joblib.delayed(_ask_remote)(url, cache, part) for part in (rows[:3000], rows[3000:])
        )
        stats = __import__("httpx").get(f"{url}/db3learn/stats").json()
        assert stats["rows_answered"] == 4000  # not 6,000: both processes spent one budget
        assert sorted(outcomes) == ["answered", "budget:2000"]
        # a rerun on the same cache_dir (as `db3learn distill --max-queries 4000 --cache-dir ...` does)
        rerun = RemoteTeacher(url, "digits", batch_size=500, cache_dir=cache, max_queries=4000)
        with pytest.raises(QueryBudgetExceeded, match="4,000 already spent through its cache_dir"):
            rerun.predict(fresh_rows[7, :10])
        answered = rows[:3000] if outcomes[0] == "answered" else rows[3000:]
        np.testing.assert_array_equal(rerun.predict(answered), logreg.predict(answered))  # paid for: free
        assert rerun.n_queries == 0
        rerun.max_queries = 4010  # raising the budget resumes
        rerun.predict(fresh_rows[7, :10])
        assert rerun.n_queries == 10 and rerun._store.spent() == 4010
        rerun.close()


def test_the_ledger_moves_answered_rows_off_their_lease_in_the_same_transaction(tmp_path):
    # between two transactions another process would see the rows twice (answered and still leased)
    # and reserve less than is left: under load, two processes on a 4,000-row budget spent only 3,500
    from db3learn._remote import _DiskAnswers

    store = _DiskAnswers(tmp_path, "digits")
    keys = [bytes([i]) * 16 for i in range(10)]
    assert store.reserve(6, 10) == 6
    store.set_many(keys[:4], [0, 1, 0, 1])
    assert store.spent() == 6  # 4 answered + 2 still leased
    caller = _DiskAnswers._lease()
    with ThreadPoolExecutor(1) as pool:  # a worker thread files answers under the caller's lease
        pool.submit(store.set_many, keys[4:6], [1, 1], caller).result()
    assert store.spent() == 6
    other = _DiskAnswers(tmp_path, "digits")  # another caller's view of the directory
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(other.reserve, 10, 10).result() == 4
    store.release()  # this thread's call is over: the lease of the other caller stays
    assert store.spent() == 10 and other.get_many(keys[:6]) == [0, 1, 0, 1, 1, 1]


KILL_CLIENT = """
import sys, numpy as np
from db3learn import RemoteTeacher
url, cache, data = sys.argv[1:]
RemoteTeacher(url, "digits-svc", batch_size=50, max_concurrency=3, cache_dir=cache, max_queries=400).predict(np.load(data))
"""


def test_kill_minus_nine_asks_at_most_one_round_of_requests_again_and_counts_only_answers(
    digits, svc, svc_file, tmp_path
):
    X = digits[0][:400]
    np.save(tmp_path / "X.npy", X)
    port = free_port()
    with ServeProcess(svc_file, port, "--stall-after", 150) as first:
        client = subprocess.Popen(
            [sys.executable, "-c", KILL_CLIENT, first.url, str(tmp_path / "cache"), str(tmp_path / "X.npy")]
        )
        try:
            wait_until(lambda: first.stats()["stalled"] == 3, 60, "three requests in flight to stall")
            received_first = first.stats()["rows_received"]
        finally:
            client.kill()  # SIGKILL: nothing is flushed, the requests in flight are lost
            client.wait(timeout=20)
    with ServeProcess(svc_file, port) as second:
        teacher = RemoteTeacher(
            second.url, "digits-svc", batch_size=50, max_concurrency=3, cache_dir=tmp_path / "cache", max_queries=400
        )
        # the killed run had reserved its 400 rows; only the 150 answered stay counted in the budget's ledger
        assert teacher._store.spent() == 150
        np.testing.assert_array_equal(teacher.predict(X), svc.predict(X))
        received_second = second.stats()["rows_received"]
        teacher.close()
    asked_again = received_first + received_second - len(X)
    assert received_first == 300 and teacher.n_cache_hits == 150  # 150 answered and cached before the kill
    assert asked_again == 3 * 50  # the bound: max_concurrency x batch_size rows per kill
