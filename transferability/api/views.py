from django.shortcuts import get_object_or_404
from django.urls import reverse
from rest_framework import generics, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from zoo.models import Checkpoint

from ..datasets import ArchiveError, create_target_dataset
from ..metrics import REGISTRY
from ..models import Evaluation, TargetDataset, Transfer
from ..results import ranked_rows
from ..submission import Conflict, SubmissionError, retry, submit_evaluation
from ..transfers import submit_transfer, transfer_payload
from ..verification import submit_truth
from .serializers import (CheckpointSerializer, DatasetUploadSerializer,
                          EvaluationCreateSerializer, TargetDatasetSerializer,
                          TransferCreateSerializer, TruthRequestSerializer,
                          evaluation_payload)


class DatasetList(generics.ListAPIView):
    serializer_class = TargetDatasetSerializer
    parser_classes = [MultiPartParser, FormParser]

    def get_queryset(self):
        return TargetDataset.objects.filter(owner=self.request.user)

    def post(self, request):
        upload = DatasetUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        try:
            dataset = create_target_dataset(request.user, upload.validated_data["name"],
                                            upload.validated_data["file"])
        except ArchiveError as exc:
            return Response({"file": [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
        body = TargetDatasetSerializer(dataset, context={"request": request}).data
        return Response(body, status=status.HTTP_201_CREATED,
                        headers={"Location": str(body["url"])})  # a plain str for WSGI


class DatasetDetail(generics.RetrieveDestroyAPIView):
    serializer_class = TargetDatasetSerializer

    def get_queryset(self):
        return TargetDataset.objects.filter(owner=self.request.user)


class EvaluationList(APIView):
    def get(self, request):
        evaluations = (Evaluation.objects.filter(owner=request.user).select_related("dataset")
                       .defer("complementarity")
                       .prefetch_related("results")[:100])
        return Response([
            {"id": e.pk, "dataset": e.dataset_id, "dataset_name": e.dataset.name,
             "status": e.status, "progress": round(e.progress, 4), "created_at": e.created_at,
             "url": request.build_absolute_uri(reverse("api-evaluation-detail", args=[e.pk]))}
            for e in evaluations
        ])

    def post(self, request):
        serializer = EvaluationCreateSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            evaluation = submit_evaluation(
                request.user, data["dataset"], data["checkpoints"], metrics=data["metrics"],
                correctness_source=data["correctness_source"], score_stages=data["score_stages"],
            )
        except SubmissionError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        evaluation.refresh_from_db()
        body = evaluation_payload(evaluation, ranked_rows(evaluation), request)
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})


class EvaluationDetail(APIView):
    def get(self, request, pk):
        evaluation = get_object_or_404(Evaluation, pk=pk, owner=request.user)
        return Response(evaluation_payload(evaluation, ranked_rows(evaluation), request))


class EvaluationRetry(APIView):
    """POST: queue again a finished evaluation's failed checkpoints, or a running one's
    stalled checkpoints."""

    def post(self, request, pk):
        evaluation = get_object_or_404(Evaluation, pk=pk, owner=request.user)
        try:
            retry(evaluation)
        except SubmissionError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        evaluation.refresh_from_db()
        body = evaluation_payload(evaluation, ranked_rows(evaluation), request)
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})


class EvaluationTruth(APIView):
    """POST: measure the true transfer accuracy of the evaluation's checkpoints (all, or
    ``checkpoints``) by ``mode`` "finetune" (default) or "probe". 202; the evaluation's
    ``truth`` then fills in. A finished ground truth is replaced; a running one answers 409.
    """

    def post(self, request, pk):
        evaluation = get_object_or_404(Evaluation, pk=pk, owner=request.user)
        serializer = TruthRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            submit_truth(evaluation, data.get("checkpoints"), mode=data["mode"])
        except SubmissionError as exc:
            code = (status.HTTP_409_CONFLICT if isinstance(exc, Conflict)
                    else status.HTTP_400_BAD_REQUEST)
            return Response({"detail": str(exc)}, status=code)
        body = evaluation_payload(evaluation, ranked_rows(evaluation), request)
        return Response(body["truth"], status=status.HTTP_202_ACCEPTED,
                        headers={"Location": body["url"]})


class CheckpointList(generics.ListAPIView):
    serializer_class = CheckpointSerializer

    def get_queryset(self):
        queryset = Checkpoint.objects.all()
        search = self.request.query_params.get("search")
        if search:
            queryset = queryset.filter(name__icontains=search)
        if self.request.query_params.get("enabled") in {"1", "true"}:
            queryset = queryset.filter(enabled=True)
        return queryset


class MetricList(APIView):
    def get(self, request):
        return Response([
            {"name": s.name, "label": s.label, "needs": s.needs,
             "higher_is_better": s.higher_is_better, "kind": s.kind, "reference": s.reference,
             "relative_to_set": s.relative_to_set, "sample_limit": s.sample_limit}
            for s in REGISTRY.values()
        ])


class TransferList(APIView):
    """GET: your transfers, newest first. POST {"evaluation", "teacher", "student"
    [, "variant"]} (checkpoint ids or names): distil the teacher into the student with KL+DP
    on the evaluation's dataset; 202 with a Location to poll."""

    def get(self, request):
        transfers = (Transfer.objects.filter(owner=request.user)
                     .select_related("teacher", "student", "result_checkpoint")[:100])
        return Response([transfer_payload(t, request) for t in transfers])

    def post(self, request):
        serializer = TransferCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        evaluation = Evaluation.objects.filter(pk=data["evaluation"], owner=request.user).first()
        if evaluation is None:
            return Response({"evaluation": [f"No evaluation {data['evaluation']} of yours."]},
                            status=status.HTTP_400_BAD_REQUEST)
        try:
            transfer = submit_transfer(request.user, evaluation, data["teacher"],
                                       data["student"], variant=data["variant"])
        except SubmissionError as exc:
            code = (status.HTTP_409_CONFLICT if isinstance(exc, Conflict)
                    else status.HTTP_400_BAD_REQUEST)
            return Response({"detail": str(exc)}, status=code)
        body = transfer_payload(transfer, request)
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})


class TransferDetail(APIView):
    def get(self, request, pk):
        transfer = get_object_or_404(Transfer.objects.select_related(
            "teacher", "student", "result_checkpoint"), pk=pk, owner=request.user)
        return Response(transfer_payload(transfer, request))
