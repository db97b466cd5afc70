"""``analytics_core.pageviews`` (the README's path for ``DEFAULT_EXCLUDE``): importing it gives
:mod:`analytics_core.web.pageviews` itself, where the page-view rule now lives beside the other
helpers the integrations share."""

import sys

from .web import pageviews as _pageviews

sys.modules[__name__] = _pageviews
