from django.urls import path

from . import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("datasets/new/", views.dataset_upload, name="dataset-upload"),
    path("datasets/<int:pk>/", views.dataset_detail, name="dataset-detail"),
    path("datasets/<int:pk>/delete/", views.dataset_delete, name="dataset-delete"),
    path("evaluations/<int:pk>/", views.evaluation_detail, name="evaluation-detail"),
    path("evaluations/<int:pk>/retry/", views.evaluation_retry, name="evaluation-retry"),
    path("evaluations/<int:pk>/truth/", views.evaluation_truth, name="evaluation-truth"),
    path("evaluations/<int:pk>/transfer/", views.evaluation_transfer, name="evaluation-transfer"),
    path("evaluations/<int:pk>/export.<str:fmt>", views.evaluation_export,
         name="evaluation-export"),
]
