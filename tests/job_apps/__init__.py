"""Job processes for the tests/test_jobs_*.py tests: multiprocessing, Celery and RQ."""
