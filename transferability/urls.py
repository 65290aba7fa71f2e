from django.urls import path, register_converter

from . import transfer_views, views


class IdConverter:
    """A database id: digits that fit a 64-bit integer (a longer number names no row and
    would overflow the database's integers)."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value) -> str:
        return str(value)


register_converter(IdConverter, "id")

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("datasets/new/", views.dataset_upload, name="dataset-upload"),
    path("datasets/<id:pk>/", views.dataset_detail, name="dataset-detail"),
    path("datasets/<id:pk>/delete/", views.dataset_delete, name="dataset-delete"),
    path("datasets/<id:pk>/images/<id:index>.png", views.dataset_image, name="dataset-image"),
    path("predictors/", views.predictors, name="predictors"),
    path("evaluations/compare/", views.evaluation_compare, name="evaluation-compare"),
    path("evaluations/<id:pk>/", views.evaluation_detail, name="evaluation-detail"),
    path("evaluations/<id:pk>/retry/", views.evaluation_retry, name="evaluation-retry"),
    path("evaluations/<id:pk>/cancel/", views.evaluation_cancel, name="evaluation-cancel"),
    path("evaluations/<id:pk>/delete/", views.evaluation_delete, name="evaluation-delete"),
    path("evaluations/<id:pk>/rerun/", views.evaluation_rerun, name="evaluation-rerun"),
    path("evaluations/<id:pk>/truth/", views.evaluation_truth, name="evaluation-truth"),
    path("evaluations/<id:pk>/transfer/", views.evaluation_transfer, name="evaluation-transfer"),
    path("evaluations/<id:pk>/export.<str:fmt>", views.evaluation_export,
         name="evaluation-export"),
    path("evaluations/<id:pk>/pairs/<id:a>/<id:b>/", views.evaluation_pair,
         name="evaluation-pair"),
    path("evaluations/<id:pk>/results/<id:result_id>/features.npz", views.result_features,
         name="result-features"),
    path("transfers/<id:pk>/", transfer_views.transfer_detail, name="transfer-detail"),
    path("transfers/<id:pk>/cancel/", transfer_views.transfer_cancel, name="transfer-cancel"),
]
