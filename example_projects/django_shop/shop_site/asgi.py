"""ASGI entry point of the example shop (``uvicorn shop_site.asgi:application``)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_site.settings")

application = get_asgi_application()
