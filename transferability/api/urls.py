from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from . import views

urlpatterns = [
    path("", views.ApiRoot.as_view(), name="api-root"),
    # The OpenAPI 3 schema and its Swagger UI, served from this site (no CDN), readable
    # without logging in; "Try it out" uses your session or token.
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # Its script is fetched from ?script, not inline: the site's CSP allows no inline script
    # without a nonce.
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("datasets/", views.DatasetList.as_view(), name="api-dataset-list"),
    path("datasets/<int:pk>/", views.DatasetDetail.as_view(), name="api-dataset-detail"),
    path("evaluations/", views.EvaluationList.as_view(), name="api-evaluation-list"),
    path("evaluations/<int:pk>/", views.EvaluationDetail.as_view(),
         name="api-evaluation-detail"),
    path("evaluations/<int:pk>/cancel/", views.EvaluationCancel.as_view(),
         name="api-evaluation-cancel"),
    path("evaluations/<int:pk>/retry/", views.EvaluationRetry.as_view(),
         name="api-evaluation-retry"),
    path("evaluations/<int:pk>/truth/", views.EvaluationTruth.as_view(),
         name="api-evaluation-truth"),
    path("transfers/", views.TransferList.as_view(), name="api-transfer-list"),
    path("transfers/<int:pk>/", views.TransferDetail.as_view(), name="api-transfer-detail"),
    path("transfers/<int:pk>/cancel/", views.TransferCancel.as_view(),
         name="api-transfer-cancel"),
    path("checkpoints/", views.CheckpointList.as_view(), name="api-checkpoint-list"),
    path("checkpoints/<int:pk>/", views.CheckpointDetail.as_view(),
         name="api-checkpoint-detail"),
    path("metrics/", views.MetricList.as_view(), name="api-metric-list"),
]
