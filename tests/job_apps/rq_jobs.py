"""The RQ job of tests/test_jobs_rq.py: it tracks (configured by :mod:`tests.job_apps.shared`)."""

import os

from tests.job_apps import shared


def track(user: str, index: int) -> int:
    """Track one event for ``user``: even indexes through the module-level API, odd ones
    through a Client."""
    assert shared.track(user, "Job Done", index, shared.APIS[index % 2])
    return os.getpid()
