from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path, re_path
from django.views.generic import RedirectView

from flashbid import health
from flashbid.api import api, api_not_found

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics, name="metrics"),
    # Browsers ask for it on every page that names no icon (the admin, /api/docs): our static SVG.
    path("favicon.ico", RedirectView.as_view(url=static("flashbid/favicon.svg"), permanent=True)),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    # Whatever no API route matched (even paths with characters `<path:>` refuses): the contract's 404.
    re_path(r"^api/", api_not_found),
    # The pages: bidder pages (auctions) and login/register/logout (accounts).
    path("", include("accounts.urls")),
    path("", include("auctions.urls")),
]
