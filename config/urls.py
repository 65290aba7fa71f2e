from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/", include("transferability.api.urls")),
    path("zoo/", include("zoo.urls")),
    path("", include("transferability.urls")),
]

handler404 = "config.errors.page_not_found"
handler500 = "config.errors.server_error"
