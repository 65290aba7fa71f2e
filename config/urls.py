from django.contrib import admin
from django.contrib.staticfiles.storage import staticfiles_storage
from django.http import HttpResponseRedirect
from django.urls import include, path
from django.views.decorators.http import require_safe

from . import accounts


@require_safe
def favicon(request):
    # Browsers ask for /favicon.ico on pages that do not link one (admin, the API's pages).
    return HttpResponseRedirect(staticfiles_storage.url("site/favicon.ico"))


urlpatterns = [
    path("favicon.ico", favicon),
    path("admin/", admin.site.urls),
    path("accounts/logout/", accounts.LogoutView.as_view(), name="logout"),
    path("accounts/token/", accounts.api_token, name="api-token"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/", include("transferability.api.urls")),
    path("zoo/", include("zoo.urls")),
    path("", include("transferability.urls")),
]

handler404 = "config.errors.page_not_found"
handler500 = "config.errors.server_error"
