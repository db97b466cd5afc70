"""What the job processes and the tests that start them agree on. Importing this changes
nothing (tests/job_apps/shared.py configures analytics_core on import: only job processes may
import it, never the pytest process)."""

WRITE_KEY = "jobs-write-key"

APIS = ("module", "client")
"""How a job tracks: the module-level API, or a Client of the process's own."""

MP_JOBS = 4
"""Jobs per kind in tests/job_apps/mp_jobs.py."""

MP_WORKERS = 2
"""Processes per pool in tests/job_apps/mp_jobs.py."""
