"""A fuller URLconf for the page-view tests (``settings.ROOT_URLCONF`` switched to it): the
project's own URLs plus the routes a real site has, each answering with an HTML document.

- the Django admin, mounted where the default exclusions would not guess (``/backoffice/``);
- routes with converters, directly and through ``include()``;
- Wagtail's catch-all, a ``re_path`` serving every page of the site through one pattern;
- a last ``<path:...>`` catch-all serving a document for any other path (static files, health
  checks), so that only the exclusion rules keep those out.
"""

from django.contrib import admin
from django.urls import include, path, re_path

from . import views
from .urls import urlpatterns as project_urlpatterns

urlpatterns = [
    *project_urlpatterns,
    path("backoffice/", admin.site.urls),
    path("articles/<int:year>/", views.document),
    path("blog/", include([path("<slug:slug>/", views.document)])),
    path("fragment/", views.fragment),
    path("ok/", views.plain_ok),
    path("no-content/", views.no_content),
    path("escaped-title/", views.escaped_title),
    path("streamed/", views.streamed),
    path("astreamed/", views.astreamed),
    # Wagtail's own pattern (wagtail.urls): every page of the site is served by it.
    re_path(r"^((?:[\w\-]+/)*)$", views.document),
    path("<path:anything>", views.document),
]
