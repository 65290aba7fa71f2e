from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/", include("transferability.api.urls")),
    path("zoo/", include("zoo.urls")),
    path("", include("transferability.urls")),
]
