from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path, re_path
from django.views.generic import RedirectView

from flashbid import health
from flashbid.api import api, api_not_found

admin.site.site_header = admin.site.site_title = "FlashBid administration"
# No app list beside every admin page: the width goes to the lists (the sessions' end and final
# price fit a 1280 px screen); the app list stays one click away on the admin's home page.
admin.site.enable_nav_sidebar = False

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
