"""The middleware's view of ``settings.ANALYTICS``: checked and resolved once, cached.

Resolving means importing the ``USER_ID`` dotted path and turning ``FORWARDED_HEADER`` and
``PAGEVIEWS_EXCLUDE`` into what the request path uses. A value that cannot be resolved is
logged, replaced by its default, and reported by ``manage.py check``: a request is never
failed for a setting.
"""

import functools
import logging
from typing import Any, Callable, Optional, Tuple

from django.conf import settings
from django.urls import NoReverseMatch, reverse
from django.utils.module_loading import import_string

from analytics_core.web import DEFAULT_FORWARDED_HEADER, normalize_forwarded_header
from analytics_core.web.anonymous_cookie import check_cookie_domain
from analytics_core.web.pageviews import DEFAULT_EXCLUDE, ExcludeRule, compile_exclude

from .settings import get_config

__all__ = ["RequestOptions", "get_options", "pageview_exclude", "resolve_user_id_setting"]

logger = logging.getLogger("segment")

UserIdResolver = Callable[[Any], Any]


def resolve_user_id_setting(value: Any) -> Optional[UserIdResolver]:
    """``USER_ID`` as a callable (imported if it is a dotted path); None when unset or broken."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = import_string(value)
        except ImportError as error:
            logger.error("analytics_django: ANALYTICS['USER_ID'] does not import: %s", error)
            return None
    if not callable(value):
        logger.error("analytics_django: ANALYTICS['USER_ID'] is not callable: %r", value)
        return None
    return value


class RequestOptions:
    """What each request needs from the settings, resolved."""

    __slots__ = (
        "trusted_proxies",
        "forwarded_header",
        "user_id",
        "cookie",
        "cookie_domain",
        "pageviews",
        "flush_each_request",
        "flush_timeout",
    )

    def __init__(self, config: Any) -> None:
        self.trusted_proxies: int = _or_default(config, "TRUSTED_PROXIES", _count, 0)
        self.forwarded_header: str = _or_default(
            config, "FORWARDED_HEADER", normalize_forwarded_header, DEFAULT_FORWARDED_HEADER
        )
        self.user_id = resolve_user_id_setting(config["USER_ID"])
        self.cookie = config["ANONYMOUS_ID_COOKIE"] is not False
        self.cookie_domain: Optional[str] = _or_default(
            config,
            "ANONYMOUS_ID_COOKIE_DOMAIN",
            lambda value: check_cookie_domain(value, "ANONYMOUS_ID_COOKIE_DOMAIN"),
            None,
        )
        self.pageviews = config["PAGEVIEWS"] is True
        flush = config["FLUSH_EACH_REQUEST"]
        self.flush_each_request: Optional[bool] = flush if isinstance(flush, bool) else None
        timeout = config["TIMEOUT"]
        self.flush_timeout: float = timeout if isinstance(timeout, (int, float)) else 15.0


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"must be an integer >= 0, got {value!r}")
    return value


def _or_default(config: Any, key: str, check: Callable[[Any], Any], default: Any) -> Any:
    try:
        return check(config[key])
    except (TypeError, ValueError) as error:
        logger.error("analytics_django: ANALYTICS[%r] is ignored: %s", key, error)
        return default


@functools.cache
def get_options() -> RequestOptions:
    """The resolved options (cached; cleared with :func:`get_config`'s cache)."""
    return RequestOptions(get_config())


def _url_prefix(url: Any) -> Optional[str]:
    # STATIC_URL may be relative ("static/"), absolute ("/static/") or on another host.
    if not isinstance(url, str) or not url or "://" in url:
        return None
    return url if url.startswith("/") else "/" + url


def _reversed(name: str) -> Optional[str]:
    try:
        return reverse(name)
    except (NoReverseMatch, Exception):  # no such URL in this project, or a broken URLconf
        return None


@functools.cache
def pageview_exclude() -> Tuple[ExcludeRule, ...]:
    """``PAGEVIEWS_EXCLUDE``, or by default :data:`DEFAULT_EXCLUDE` plus this project's
    ``STATIC_URL``, ``MEDIA_URL`` and the Django and Wagtail admins' mount points.

    Computed on the first page view, once the URLconf can be reversed; cached."""
    value = get_config()["PAGEVIEWS_EXCLUDE"]
    if value is not None:
        try:
            return compile_exclude(value, "PAGEVIEWS_EXCLUDE")
        except ValueError as error:
            logger.error("analytics_django: %s; the default exclusions apply", error)
    rules = list(DEFAULT_EXCLUDE)
    extra = (
        _url_prefix(getattr(settings, "STATIC_URL", None)),
        _url_prefix(getattr(settings, "MEDIA_URL", None)),
        _reversed("admin:index"),
        _reversed("wagtailadmin_home"),
    )
    for prefix in extra:
        if prefix and prefix != "/" and prefix not in rules:
            rules.append(prefix)
    return tuple(rules)


def clear_caches() -> None:
    """Forget the resolved options (the settings changed)."""
    get_options.cache_clear()
    pageview_exclude.cache_clear()
