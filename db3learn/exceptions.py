"""Exceptions raised by db3learn.

Every exception of the library's own derives from :class:`DB3Error`, and also
from the standard exception that scikit-learn code already catches for the
same kind of problem (``ValueError`` for bad input, ``RuntimeError`` for a
teacher that failed), so ``except ValueError`` keeps working around db3learn.
"""

__all__ = [
    "DB3Error",
    "QueryBudgetExceeded",
    "TeacherError",
    "TeacherAnswerError",
    "RemoteTeacherError",
    "UntrustedModelError",
]


class DB3Error(Exception):
    """Base class of every exception db3learn raises of its own."""


class QueryBudgetExceeded(DB3Error, RuntimeError):
    """The teacher's query budget (``max_queries``) ran out.

    Every answer received before the budget ran out is cached in the
    :class:`~db3learn.Teacher`; raise the budget and call again to resume
    without asking those rows twice.

    Attributes
    ----------
    max_queries : int
        The budget, in rows sent to the teacher.
    n_queries : int
        Rows already sent to the teacher when the error was raised.
    n_requested : int
        Rows the failed call still needed answered.
    """

    def __init__(self, message, *, max_queries, n_queries, n_requested):
        super().__init__(message)
        self.max_queries = max_queries
        self.n_queries = n_queries
        self.n_requested = n_requested

    def __reduce__(self):  # keyword-only arguments: pickle them, so the error crosses processes
        kwargs = {"max_queries": self.max_queries, "n_queries": self.n_queries, "n_requested": self.n_requested}
        return _rebuild, (type(self), self.args, kwargs)


class TeacherError(DB3Error, RuntimeError):
    """The teacher's own ``predict`` raised; the original is the ``__cause__``."""


class TeacherAnswerError(DB3Error, ValueError):
    """The teacher answered, but not with one known label per row."""


class RemoteTeacherError(TeacherError):
    """A remote teacher could not answer: unreachable, failing after the retries, or refusing the request.

    The message quotes the server's response (truncated) and never holds
    credentials. Answers received before the error stay cached.
    """


class UntrustedModelError(DB3Error, ValueError):
    """A saved model holds types that are not trusted to be loaded safely.

    Attributes
    ----------
    untrusted_types : list of str
        The fully qualified names of the types that were refused.
    """

    def __init__(self, message, *, untrusted_types):
        super().__init__(message)
        self.untrusted_types = list(untrusted_types)

    def __reduce__(self):
        return _rebuild, (type(self), self.args, {"untrusted_types": self.untrusted_types})


def _rebuild(cls, args, kwargs):
    return cls(*args, **kwargs)
