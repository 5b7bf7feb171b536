"""The HTTP service (FastAPI): BC-facing API (/v1), PSP webhooks, pay-by-link redirects,
health/readiness, metrics and the partner dashboard. ``create_app`` builds it."""
from .app import create_app

__all__ = ["create_app"]
