"""Plain WSGI and ASGI apps (no framework, no integration) for tests/test_reliability_servers.py."""
