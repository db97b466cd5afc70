"""What is built around the client, apart from its path (call -> message -> bytes -> queue ->
uploader -> transport, the modules of ``analytics_core`` itself):

- ``cli``, ``cli_calls``, ``cli_import``: the ``analytics-core`` command (the six calls, a
  historical import from JSONL or CSV, the collector, the demo);
- ``demo``: ``make demo``, the collector and the example shop with real traffic;
- ``capture``, ``testing``, ``pytest_plugin``: a test run captures instead of sending, and the
  ``analytics_events`` fixture (``analytics_core.testing`` is the public path);
- the local collector is ``analytics_core.collector``.

Nothing is imported here: the client imports ``capture`` alone, and stays light.
"""
