"""Where analytics-python keeps its HTTP error: ``from analytics.request import APIError``
(in Segment's SDK guide) keeps working after ``import analytics_core as analytics``.

Only the names code outside that library uses are here; the sending itself is
:mod:`analytics_core.transport`.
"""

from .errors import APIError

__all__ = ["APIError"]
