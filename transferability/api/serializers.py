from rest_framework import serializers

from zoo.models import Checkpoint

from ..metrics import REGISTRY
from ..models import Evaluation, GroundTruth, TargetDataset, Transfer
from ..results import relative_to_set
from ..verification import truth_payload


class TargetDatasetSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api-dataset-detail")

    class Meta:
        model = TargetDataset
        fields = ["id", "url", "name", "class_names", "class_counts", "num_images",
                  "archive_bytes", "content_hash", "created_at"]


class DatasetUploadSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    file = serializers.FileField()


class CheckpointSerializer(serializers.ModelSerializer):
    class Meta:
        model = Checkpoint
        fields = ["id", "name", "architecture", "pretrained_tag", "family", "weights_source",
                  "hub_id", "input_size", "interpolation", "crop_pct", "mean", "std",
                  "num_classes", "feature_dim", "param_count", "source_dataset",
                  "source_top1", "license", "enabled"]


class CheckpointChoiceField(serializers.Field):
    """A list of checkpoint ids or names, or the string "all" for every enabled one."""

    default_error_messages = {
        "invalid": 'Give a list of checkpoint ids (or names), or "all".',
        "unknown": "Unknown or disabled checkpoints: {names}.",
        "empty": "No enabled checkpoints to evaluate.",
    }

    def to_internal_value(self, data):
        enabled = Checkpoint.objects.filter(enabled=True)
        if data == "all":
            chosen = list(enabled)
            if not chosen:
                self.fail("empty")
            return chosen
        if not isinstance(data, list) or not data:
            self.fail("invalid")
        ids = [d for d in data if isinstance(d, int) and not isinstance(d, bool)]
        names = [d for d in data if isinstance(d, str)]
        if len(ids) + len(names) != len(data):
            self.fail("invalid")
        possible = [d for d in ids if 0 < d < 2**63]  # others name no row, and overflow SQL
        chosen = list(enabled.filter(pk__in=possible)) + list(enabled.filter(name__in=names))
        found = {c.pk for c in chosen} | {c.name for c in chosen}
        unknown = [str(d) for d in data if d not in found]
        if unknown:
            self.fail("unknown", names=", ".join(unknown))
        return list({c.pk: c for c in chosen}.values())

    def to_representation(self, value):
        return [c.pk for c in value]


class EvaluationCreateSerializer(serializers.Serializer):
    dataset = serializers.IntegerField()
    checkpoints = CheckpointChoiceField()
    metrics = serializers.ListField(
        child=serializers.ChoiceField(choices=list(REGISTRY)), required=False, default=list
    )
    correctness_source = serializers.ChoiceField(
        choices=Evaluation.CorrectnessSource.values, default=Evaluation.CorrectnessSource.TARGET
    )
    score_stages = serializers.BooleanField(default=False)

    def validate_dataset(self, value):
        owner = self.context["request"].user
        try:
            return TargetDataset.objects.get(pk=value, owner=owner)
        except TargetDataset.DoesNotExist:
            raise serializers.ValidationError(f"No dataset {value} of yours.") from None


def result_payload(row) -> dict:
    result, checkpoint = row.result, row.checkpoint
    return {
        "checkpoint": {"id": checkpoint.pk, "name": checkpoint.name,
                       "architecture": checkpoint.architecture,
                       "feature_dim": result.feature_dim or checkpoint.feature_dim,
                       "param_count": checkpoint.param_count,
                       "source_top1": checkpoint.source_top1},
        "status": result.status,
        "message": result.message,
        "images_done": result.images_done,
        "images_total": result.images_total,
        "features_cached": result.features_cached,
        "device": result.device,
        "extraction_seconds": result.extraction_seconds,
        "scoring_seconds": result.scoring_seconds,
        "rank": row.rank,
        "scores": row.scores,
        "ranks": row.ranks,
        "errors": row.errors,
        "notes": row.notes,
        "score_seconds": row.seconds,
        "best_stage": result.best_stage or None,
        "stage_scores": row.stage_scores,
    }


def evaluation_payload(evaluation, rows, request=None) -> dict:
    from django.urls import reverse

    url = reverse("api-evaluation-detail", args=[evaluation.pk])
    return {
        "id": evaluation.pk,
        "url": request.build_absolute_uri(url) if request else url,
        "page": evaluation.get_absolute_url(),
        "dataset": evaluation.dataset_id,
        "status": evaluation.status,
        "progress": round(evaluation.progress, 4),
        "message": evaluation.message,
        "metrics": evaluation.metrics,
        "correctness_source": evaluation.correctness_source,
        "score_stages": evaluation.score_stages,
        "created_at": evaluation.created_at,
        "started_at": evaluation.started_at,
        "finished_at": evaluation.finished_at,
        "duration_seconds": evaluation.duration_seconds,
        # Scores of these metrics are relative to this set of checkpoints.
        "relative_to_set": relative_to_set(evaluation),
        "results": [result_payload(r) for r in rows],
        "complementarity": evaluation.complementarity,
        # True transfer accuracy and each metric's agreement with it, once asked for.
        "truth": truth_payload(evaluation, rows),
    }


class TruthRequestSerializer(serializers.Serializer):
    checkpoints = serializers.ListField(
        child=serializers.JSONField(), required=False, allow_empty=False,
        help_text="Checkpoint ids or names among the evaluation's finished checkpoints; "
                  "all of them when left out.")
    mode = serializers.ChoiceField(choices=GroundTruth.Mode.values,
                                   default=GroundTruth.Mode.FINETUNE)

    def validate_checkpoints(self, value):
        for item in value:
            if isinstance(item, bool) or not isinstance(item, (int, str)):
                raise serializers.ValidationError("Give checkpoint ids or names.")
        return value


class CheckpointReferenceField(serializers.JSONField):
    """One checkpoint, by id or by name."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (int, str)) or data == "":
            raise serializers.ValidationError("Give a checkpoint id or name.")
        return data


class TransferCreateSerializer(serializers.Serializer):
    evaluation = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    teacher = CheckpointReferenceField()
    student = CheckpointReferenceField()
    variant = serializers.ChoiceField(choices=Transfer.Variant.values,
                                      default=Transfer.Variant.SUPERVISED)
