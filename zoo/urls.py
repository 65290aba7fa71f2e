from django.urls import path

from . import views

urlpatterns = [
    path("", views.checkpoint_list, name="checkpoint-list"),
    path("<int:pk>/", views.checkpoint_detail, name="checkpoint-detail"),
]
