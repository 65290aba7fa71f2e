from django.contrib import admin
from django.contrib.auth import views as auth_views
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
    # Django's login and password change; not its password reset, which would let anyone
    # make the site send mail (it sends none).
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/password_change/", auth_views.PasswordChangeView.as_view(),
         name="password_change"),
    path("accounts/password_change/done/", auth_views.PasswordChangeDoneView.as_view(),
         name="password_change_done"),
    path("api/", include("transferability.api.urls")),
    path("zoo/", include("zoo.urls")),
    path("", include("transferability.urls")),
]

handler404 = "config.errors.page_not_found"
handler500 = "config.errors.server_error"
