from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from zoo.models import Checkpoint

from ..datasets import ArchiveError, accept_upload
from ..metrics import REGISTRY
from ..models import Evaluation, TargetDataset, Transfer
from ..quota import check_upload
from ..submission import Conflict, SubmissionError, retry, submit_evaluation
from ..transfers import cancel_transfer, submit_transfer
from ..verification import submit_truth
from .cancellation import cancel_evaluation, delete_evaluation
from .schema import error, invalid
from .serializers import (CheckpointFromHubSerializer, CheckpointSerializer, DatasetUploadSerializer,
                          EvaluationCreateSerializer, EvaluationCreatedSerializer,
                          EvaluationSerializer,
                          EvaluationSummarySerializer, MetricSerializer, TargetDatasetSerializer,
                          TransferCreateSerializer, TransferSerializer, TruthRequestSerializer,
                          TruthSerializer)
from .throttling import SUBMIT_SCOPE, SubmissionThrottle

# The root's entries: name -> URL name, in the order a client uses them.
ROOT = {
    "datasets": "api-dataset-list",
    "evaluations": "api-evaluation-list",
    "transfers": "api-transfer-list",
    "checkpoints": "api-checkpoint-list",
    "metrics": "api-metric-list",
    "schema": "api-schema",
    "docs": "api-docs",
}


class Submissions:
    """POSTs to these views count against the user's ZOORANK_SUBMIT_RATE."""

    throttle_classes = [SubmissionThrottle]
    throttle_scope = SUBMIT_SCOPE


def _error(exc: SubmissionError) -> Response:
    code = status.HTTP_409_CONFLICT if isinstance(exc, Conflict) else status.HTTP_400_BAD_REQUEST
    return Response({"detail": str(exc)}, status=code)


class ApiRoot(APIView):
    """Every collection of the API, with its absolute URL."""

    @extend_schema(tags=["root"], responses=inline_serializer(
        "ApiRoot", {name: serializers.URLField() for name in ROOT}))
    def get(self, request):
        return Response({name: reverse(url_name, request=request)
                         for name, url_name in ROOT.items()})


@extend_schema(tags=["datasets"])
class DatasetList(Submissions, generics.ListAPIView):
    """GET: your datasets. POST (multipart: ``name``, ``file``): upload a zip with one folder
    of images per class; 202 with a Location: the dataset is ``ingesting`` until a worker
    has checked and unpacked it (poll it for ``state``)."""

    parser_classes = [MultiPartParser, FormParser]

    def get_queryset(self):
        return TargetDataset.objects.filter(owner=self.request.user)

    def get_serializer_class(self):
        # The browsable API's form (and the schema) upload a file.
        if self.request is not None and self.request.method == "POST":
            return DatasetUploadSerializer
        return TargetDatasetSerializer

    @extend_schema(request=DatasetUploadSerializer, responses={
        202: TargetDatasetSerializer,
        400: invalid("Not a zip, or over the size limit: the reason is under `file`."),
    })
    def post(self, request):
        # Before the body is read: an upload that cannot fit the quota is not even stored.
        declared = request.META.get("CONTENT_LENGTH") or ""
        try:
            check_upload(request.user, int(declared) if declared.isdecimal() else 0)
        except ArchiveError as exc:
            raise serializers.ValidationError({"file": [str(exc)]}) from None
        upload = DatasetUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        try:
            dataset = accept_upload(request.user, upload.validated_data["name"],
                                    upload.validated_data["file"])
        except ArchiveError as exc:
            raise serializers.ValidationError({"file": [str(exc)]}) from None
        body = TargetDatasetSerializer(dataset, context={"request": request}).data
        return Response(body, status=status.HTTP_202_ACCEPTED,
                        headers={"Location": str(body["url"])})  # a plain str for WSGI


@extend_schema(tags=["datasets"])
class DatasetDetail(generics.RetrieveDestroyAPIView):
    """GET: one of your datasets. DELETE: it, its files and its evaluations."""

    serializer_class = TargetDatasetSerializer

    def get_queryset(self):
        return TargetDataset.objects.filter(owner=self.request.user)


@extend_schema(tags=["evaluations"])
class EvaluationList(Submissions, generics.ListAPIView):
    """GET: your evaluations, newest first. POST: score checkpoints on one of your datasets;
    202 with a Location to poll."""

    def get_queryset(self):
        return (Evaluation.objects.filter(owner=self.request.user).select_related("dataset")
                .defer("complementarity").prefetch_related("results"))

    def get_serializer_class(self):
        if self.request is not None and self.request.method == "POST":
            return EvaluationCreateSerializer
        return EvaluationSummarySerializer

    @extend_schema(request=EvaluationCreateSerializer, responses={
        202: EvaluationCreatedSerializer,
        400: invalid("Refused: the reason is under the field, or in `detail`."),
    })
    def post(self, request):
        serializer = EvaluationCreateSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            evaluation = submit_evaluation(
                request.user, data["dataset"], data["checkpoints"], metrics=data["metrics"],
                correctness_source=data["correctness_source"], score_stages=data["score_stages"],
                truth_on_finish=data["truth_on_finish"],
            )
        except SubmissionError as exc:
            return _error(exc)
        response = _accepted(request, evaluation)
        response.data["left_out"] = data["left_out"]  # not in the evaluation: "all" decided
        return response


def _accepted(request, evaluation: Evaluation) -> Response:
    evaluation.refresh_from_db()
    body = EvaluationSerializer(evaluation, context={"request": request}).data
    return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})


def _own_evaluation(request, pk) -> Evaluation:
    return get_object_or_404(Evaluation, pk=pk, owner=request.user)


@extend_schema(tags=["evaluations"])
class EvaluationDetail(APIView):
    """GET: the evaluation, its progress and every checkpoint's scores and rank.
    DELETE: the evaluation and its results (a running one is cancelled first)."""

    @extend_schema(responses=EvaluationSerializer)
    def get(self, request, pk):
        evaluation = _own_evaluation(request, pk)
        return Response(EvaluationSerializer(evaluation, context={"request": request}).data)

    @extend_schema(responses={
        204: None,
        409: error("Its ground truth or a transfer from it is still running."),
    })
    def delete(self, request, pk):
        try:
            delete_evaluation(_own_evaluation(request, pk))
        except SubmissionError as exc:
            return _error(exc)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["evaluations"])
class EvaluationCancel(APIView):
    """POST: stop a pending or running evaluation. Its unfinished checkpoints fail with
    "cancelled by its owner", the evaluation with "cancelled"; a retry resumes it."""

    @extend_schema(request=None, responses={
        200: EvaluationSerializer,
        409: error("The evaluation has already finished."),
    })
    def post(self, request, pk):
        evaluation = _own_evaluation(request, pk)
        try:
            cancel_evaluation(evaluation)
        except SubmissionError as exc:
            return _error(exc)
        evaluation.refresh_from_db()
        return Response(EvaluationSerializer(evaluation, context={"request": request}).data)


@extend_schema(tags=["evaluations"])
class EvaluationRetry(Submissions, APIView):
    """POST: queue again a finished evaluation's failed checkpoints, or a running one's
    stalled checkpoints."""

    @extend_schema(request=None, responses={
        202: EvaluationSerializer,
        409: error("Nothing to retry: no checkpoint failed, or none has stalled yet."),
    })
    def post(self, request, pk):
        evaluation = _own_evaluation(request, pk)
        try:
            retry(evaluation)
        except SubmissionError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return _accepted(request, evaluation)


@extend_schema(tags=["evaluations"])
class EvaluationTruth(Submissions, APIView):
    """POST: measure the true transfer accuracy of the evaluation's checkpoints (all, or
    ``checkpoints``) by ``mode`` "finetune" (default) or "probe"; or, with ``budget`` k and
    ``strategy`` "top" (the k best by the lead predictor) or "halving" (successive halving
    over the lead's order, k full fine-tunes' worth), find the best with a few fine-tunes.
    202; the evaluation's ``truth`` then fills in (``truth.budget`` names the best found and,
    where a full truth of the same data exists, its regret). A finished ground truth is
    replaced; a running one answers 409.
    """

    @extend_schema(request=TruthRequestSerializer, responses={
        202: TruthSerializer,
        400: invalid("Refused: checkpoints that did not finish, or too few images per class."),
        409: error("The evaluation is still running, or its ground truth is being measured."),
    })
    def post(self, request, pk):
        evaluation = _own_evaluation(request, pk)
        serializer = TruthRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            submit_truth(evaluation, data.get("checkpoints"), mode=data["mode"],
                         budget=data.get("budget"), strategy=data.get("strategy", ""),
                         seeds=data.get("seeds", 1))
        except SubmissionError as exc:
            return _error(exc)
        body = EvaluationSerializer(evaluation, context={"request": request}).data
        return Response(body["truth"], status=status.HTTP_202_ACCEPTED,
                        headers={"Location": body["url"]})


@extend_schema(tags=["checkpoints"], parameters=[
    OpenApiParameter("search", OpenApiTypes.STR, description="Part of the checkpoint's name."),
    OpenApiParameter("enabled", OpenApiTypes.STR, enum=["1", "true"],
                     description="Only the enabled checkpoints."),
])
class CheckpointList(generics.ListAPIView):
    """GET: the zoo: the shared checkpoints and your own (students distilled on your data).
    POST {"hub": timm name or "hf-hub:" id [, "name", "enabled"]} (staff): add a checkpoint
    from the hub, its fields read from the repository's config.json; 202 with a Location: a
    worker fetches the weights (``fetch_message``), records their sha256 (``hub_files``) and
    loads them (``loads``, ``load_message``)."""

    serializer_class = CheckpointSerializer

    def get_queryset(self):
        queryset = Checkpoint.objects.visible_to(self.request.user)
        search = self.request.query_params.get("search")
        if search:
            queryset = queryset.filter(name__icontains=search)
        if self.request.query_params.get("enabled") in {"1", "true"}:
            queryset = queryset.filter(enabled=True)
        return queryset

    def get_serializer_class(self):
        if self.request is not None and self.request.method == "POST":
            return CheckpointFromHubSerializer
        return CheckpointSerializer

    @extend_schema(request=CheckpointFromHubSerializer, responses={
        202: CheckpointSerializer,
        400: invalid("Refused: not on the hub, not a timm name, a name in use, ..."),
        403: error("Only staff who may add checkpoints."),
        503: error("The task queue could not be reached; nothing was added."),
    })
    def post(self, request):
        from zoo.hub_curation import CurationError, QueueUnavailable, add_from_hub

        # As the admin's "Add": staff with the permission to add checkpoints.
        if not (request.user.is_staff and request.user.has_perm("zoo.add_checkpoint")):
            return Response({"detail": "Only staff who may add checkpoints add them to the "
                                       "zoo."}, status=status.HTTP_403_FORBIDDEN)
        serializer = CheckpointFromHubSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            checkpoint, note = add_from_hub(data["hub"], data.get("name", ""), data["enabled"])
        except CurationError as exc:
            return Response({"hub": [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
        except QueueUnavailable as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        body = CheckpointSerializer(checkpoint).data
        if note:
            body["note"] = note
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={
            "Location": reverse("api-checkpoint-detail", args=[checkpoint.pk], request=request)})


@extend_schema(tags=["checkpoints"])
class CheckpointDetail(generics.RetrieveAPIView):
    """One checkpoint of the zoo (shared, or yours)."""

    serializer_class = CheckpointSerializer

    def get_queryset(self):
        return Checkpoint.objects.visible_to(self.request.user)


@extend_schema(tags=["metrics"])
class MetricList(generics.ListAPIView):
    """The transferability metrics and baselines, in the order pages show them."""

    serializer_class = MetricSerializer

    def get_queryset(self):
        return list(REGISTRY.values())


@extend_schema(tags=["transfers"])
class TransferList(Submissions, generics.ListAPIView):
    """GET: your transfers, newest first. POST {"evaluation", "teacher" or "teachers",
    "student" [, "variant", "mode", "order", "epochs", "learning_rate", "temperature"]}
    (checkpoint ids or names): distil the teachers into the student with KL+DP on the
    evaluation's dataset (several: sequential, parallel or soup); 202 with a Location to
    poll."""

    def get_queryset(self):
        return (Transfer.objects.filter(owner=self.request.user)
                .select_related("teacher", "student", "result_checkpoint"))

    def get_serializer_class(self):
        if self.request is not None and self.request.method == "POST":
            return TransferCreateSerializer
        return TransferSerializer

    @extend_schema(request=TransferCreateSerializer, responses={
        202: TransferSerializer,
        400: invalid("Refused: the reason is under the field, or in `detail`."),
        409: error("The evaluation is still running."),
    })
    def post(self, request):
        serializer = TransferCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        evaluation = Evaluation.objects.filter(pk=data["evaluation"], owner=request.user).first()
        if evaluation is None:
            raise serializers.ValidationError(
                {"evaluation": [f"No evaluation {data['evaluation']} of yours."]})
        try:
            transfer = submit_transfer(
                request.user, evaluation, data["teachers"], data["student"],
                variant=data["variant"], mode=data["mode"], order=data["order"],
                epochs=data.get("epochs"), learning_rate=data.get("learning_rate"),
                temperature=data.get("temperature"))
        except SubmissionError as exc:
            return _error(exc)
        body = TransferSerializer(transfer, context={"request": request}).data
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})


@extend_schema(tags=["transfers"])
class TransferDetail(APIView):
    """A transfer: its progress, then the student's accuracy delta and flips."""

    @extend_schema(responses=TransferSerializer)
    def get(self, request, pk):
        transfer = get_object_or_404(Transfer.objects.select_related(
            "teacher", "student", "result_checkpoint"), pk=pk, owner=request.user)
        return Response(TransferSerializer(transfer, context={"request": request}).data)


@extend_schema(tags=["transfers"])
class TransferCancel(APIView):
    """Stop a transfer: the worker stops at its next batch and saves no checkpoint."""

    @extend_schema(request=None, responses={200: TransferSerializer,
                                            409: error("The transfer has already finished.")})
    def post(self, request, pk):
        transfer = get_object_or_404(Transfer, pk=pk, owner=request.user)
        try:
            cancel_transfer(transfer)
        except SubmissionError as exc:
            return _error(exc)
        transfer.refresh_from_db()
        return Response(TransferSerializer(transfer, context={"request": request}).data)
