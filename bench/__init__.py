"""Side-by-side benchmark of analytics_core against Segment's analytics-python.

``python -m bench.run`` starts a local collector, runs every measurement for each library in its
own subprocess (:mod:`bench.workloads`), checks the collector's stored count after each delivery
measurement and prints one table (:mod:`bench.report`).
"""
