"""tea_api: a small FastAPI tea shop showing analytics_asgi's one-line set-up (see app.py)."""
