from django.contrib import admin
from django.http import HttpRequest
from django.urls import path, re_path

from flashbid import health
from flashbid.api import api, error_response
from flashbid.errors import ErrorCode

async def api_not_found(request: HttpRequest):
    """Any /api/ path no route matched (also a malformed session id): the contract's 404 body."""
    return error_response(404, ErrorCode.NOT_FOUND, "Not found.")


urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    re_path(r"^api/", api_not_found),
]
