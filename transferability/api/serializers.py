from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from zoo.models import Checkpoint

from ..leakage import leaked_among, leaked_checkpoints
from ..metrics import REGISTRY
from ..models import Evaluation, GroundTruth, Status, TargetDataset, Transfer
from ..results import ranked_rows, relative_to_set
from ..transfers import (EPOCHS, LEARNING_RATES, MAX_TEACHERS, TEMPERATURES,
                         transfer_payload)
from ..verification import truth_payload

ID_OR_NAME = {"oneOf": [{"type": "integer"}, {"type": "string"}]}


class TargetDatasetSerializer(serializers.ModelSerializer):
    """A dataset; ``state`` is ``ingesting`` until a worker has checked and unpacked its
    archive (``ingest_done`` of ``ingest_total`` image entries), then ``ready``, or
    ``refused`` / ``failed`` with the reason in ``message``. ``skipped`` lists the first 100
    of the ``skipped_count`` entries left out with a warning. ``stored_bytes``: what the
    unpacked dataset takes of the owner's storage quota."""

    url = serializers.HyperlinkedIdentityField(view_name="api-dataset-detail")

    class Meta:
        model = TargetDataset
        fields = ["id", "url", "name", "state", "message", "ingest_done", "ingest_total",
                  "class_names", "class_counts", "num_images", "skipped", "skipped_count",
                  "archive_bytes", "stored_bytes", "content_hash", "created_at", "ingested_at"]


class DatasetUploadSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    file = serializers.FileField(help_text="A zip archive with one folder of images "
                                           "per class.")


class CheckpointSerializer(serializers.ModelSerializer):
    """A checkpoint of the zoo. ``hub_files``: the sha256 of each file fetched from the hub,
    recorded at the first download; ``weights_bytes``: the weights file's size;
    ``fetch_message``: the last fetch of its hub weights ("downloading 97.8 of 102 MB",
    where they came from, or why not); ``loads``/``load_message``: the last validation."""

    class Meta:
        model = Checkpoint
        fields = ["id", "name", "architecture", "pretrained_tag", "family", "weights_source",
                  "hub_id", "input_size", "interpolation", "crop_pct", "mean", "std",
                  "num_classes", "feature_dim", "param_count", "source_dataset",
                  "source_top1", "license", "enabled", "hub_files", "weights_bytes",
                  "fetch_message", "loads", "load_message"]


class CheckpointFromHubSerializer(serializers.Serializer):
    """Staff: add a checkpoint from the hub."""

    hub = serializers.CharField(
        max_length=300, help_text='A timm pretrained name ("resnet50.a1_in1k") or an hf-hub: '
                                  'id ("hf-hub:timm/resnet50.a1_in1k").')
    name = serializers.CharField(max_length=200, required=False, allow_blank=True,
                                 help_text="Its name in the zoo; the timm name or repository "
                                           "id when left out.")
    enabled = serializers.BooleanField(default=True)


@extend_schema_field({
    "oneOf": [{"type": "array", "items": ID_OR_NAME, "minItems": 1},
              {"type": "string", "enum": ["all"]}],
    "description": 'Checkpoint ids or names, or "all" for every enabled checkpoint except '
                   'those trained on this dataset (or on one with the same content hash): the '
                   "response's `left_out` names them; give them by name to include them.",
})
class CheckpointChoiceField(serializers.Field):
    """A list of checkpoint ids or names, or the string "all" for every enabled one, among
    the shared zoo and the requesting user's own checkpoints ("all" is an
    :class:`AllCheckpoints`: the serializer leaves out those trained on the dataset)."""

    default_error_messages = {
        "invalid": 'Give a list of checkpoint ids (or names), or "all".',
        "unknown": "Unknown or disabled checkpoints: {names}.",
        "empty": "No enabled checkpoints to evaluate.",
        "nul": "Checkpoint names cannot hold NUL characters (\\x00).",
    }

    def to_internal_value(self, data):
        enabled = Checkpoint.objects.visible_to(self.context["request"].user).filter(enabled=True)
        if data == "all":
            chosen = AllCheckpoints(enabled)
            if not chosen:
                self.fail("empty")
            return chosen
        if not isinstance(data, list) or not data:
            self.fail("invalid")
        ids = [d for d in data if isinstance(d, int) and not isinstance(d, bool)]
        names = [d for d in data if isinstance(d, str)]
        if len(ids) + len(names) != len(data):
            self.fail("invalid")
        if any("\x00" in name for name in names):  # no name has one; PostgreSQL refuses them
            self.fail("nul")
        possible = [d for d in ids if 0 < d < 2**63]  # others name no row, and overflow SQL
        chosen = list(enabled.filter(pk__in=possible)) + list(enabled.filter(name__in=names))
        found = {c.pk for c in chosen} | {c.name for c in chosen}
        unknown = [str(d) for d in data if d not in found]
        if unknown:
            self.fail("unknown", names=", ".join(unknown))
        return list({c.pk: c for c in chosen}.values())

    def to_representation(self, value):
        return [c.pk for c in value]


class AllCheckpoints(list):
    """The checkpoints "all" stands for, before those trained on the dataset are left out."""


class EvaluationCreateSerializer(serializers.Serializer):
    dataset = serializers.IntegerField()
    checkpoints = CheckpointChoiceField()
    metrics = serializers.ListField(
        child=serializers.ChoiceField(choices=list(REGISTRY)), required=False, default=list
    )
    correctness_source = serializers.ChoiceField(
        choices=Evaluation.CorrectnessSource.choices, default=Evaluation.CorrectnessSource.TARGET
    )
    score_stages = serializers.BooleanField(default=False)
    truth_on_finish = serializers.ChoiceField(
        choices=[("", "no ground truth")] + GroundTruth.Mode.choices, default="",
        help_text="Measure ground truth in this mode as soon as the evaluation finishes "
                  "(as POST /api/evaluations/<id>/truth/ would).")

    def validate_dataset(self, value):
        owner = self.context["request"].user
        try:
            return TargetDataset.objects.get(pk=value, owner=owner)
        except TargetDataset.DoesNotExist:
            raise serializers.ValidationError(f"No dataset {value} of yours.") from None

    def validate(self, data):
        """"all" leaves out the checkpoints trained on this dataset: ``left_out`` says which
        and why. Named ones are kept; the evaluation's ``leakage`` warns of them."""
        data["left_out"] = {}
        if isinstance(data["checkpoints"], AllCheckpoints):
            data["left_out"] = leaked_among(data["checkpoints"], data["dataset"])
            data["checkpoints"] = [c for c in data["checkpoints"]
                                   if c.name not in data["left_out"]]
            if not data["checkpoints"]:
                raise serializers.ValidationError({"checkpoints": [
                    "Every enabled checkpoint was trained on this dataset; name the ones to "
                    "evaluate anyway."]})
        return data


def result_payload(row, consensus=None, truth=None) -> dict:
    """One checkpoint's row; ``consensus`` ({name: rank}) and ``truth`` (the truth payload)
    add its consensus rank and true accuracy."""
    result, checkpoint = row.result, row.checkpoint
    accuracy = ((truth or {}).get("accuracy") or {}).get(checkpoint.name)
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
        "rank": row.rank,  # by "ranked_by" (the evaluation's), 1 = best; ties share it
        "lead_score": row.lead_score,
        # Mean rank over the established metrics that voted for it, ranked again.
        "consensus_rank": (consensus or {}).get(checkpoint.name),
        # Metrics flagged for it (their value cannot be estimated here): they do not vote.
        "flagged": sorted(getattr(row, "flagged", ())),
        "true_accuracy": None if accuracy is None else {
            "mean": accuracy,
            "standard_error": ((truth or {}).get("standard_error") or {}).get(checkpoint.name)},
        # What a metric says of its own value: TMI's share of floored distances.
        "diagnostics": row.diagnostics,
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

    from ..recommendation import recommend
    from ..results import lead_of

    url = reverse("api-evaluation-detail", args=[evaluation.pk])
    truth = truth_payload(evaluation, rows)
    lead = lead_of(rows)  # what ranks the rows (the lead, or a predictor picked)
    evidence_lead = getattr(rows, "evidence_lead", None) or lead
    leakage = leaked_checkpoints(evaluation)
    recommendation = recommend(rows, evaluation.dataset.class_counts, truth,
                               lead=evidence_lead, leakage=leakage)
    consensus = getattr(rows, "consensus", None)
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
        "truth_on_finish": evaluation.truth_on_finish,
        "created_at": evaluation.created_at,
        "started_at": evaluation.started_at,
        "finished_at": evaluation.finished_at,
        "duration_seconds": evaluation.duration_seconds,
        # Scores of these metrics are relative to this set of checkpoints.
        "relative_to_set": relative_to_set(evaluation),
        # What "rank" is: the predictor that ranked the rows, and whether it is the lead
        # chosen by evidence or one picked (?rank=).
        "ranked_by": {"name": lead.name, "label": lead.label,
                      "picked": lead is not evidence_lead} if lead else None,
        "results": [result_payload(r, consensus, truth) for r in rows],
        "complementarity": evaluation.complementarity,
        # True transfer accuracy and each metric's agreement with it, once asked for.
        "truth": truth,
        # The checkpoint to take, by what, how sure (P(first), rank intervals), cautions.
        "recommendation": recommendation.payload() if recommendation else None,
        # Checkpoints trained on this dataset or its twin: {name: reason}.
        "leakage": leakage,
    }


@extend_schema_field(ID_OR_NAME)
class IdOrNameField(serializers.JSONField):
    """A checkpoint id or name (checked by the serializer that uses it)."""


@extend_schema_serializer(component_name="TruthCreate")
class TruthRequestSerializer(serializers.Serializer):
    checkpoints = serializers.ListField(
        child=IdOrNameField(), required=False, allow_empty=False,
        help_text="Checkpoint ids or names among the evaluation's finished checkpoints; "
                  "all of them when left out.")
    mode = serializers.ChoiceField(choices=GroundTruth.Mode.choices,
                                   default=GroundTruth.Mode.FINETUNE)
    budget = serializers.IntegerField(
        required=False, min_value=1, max_value=1000,
        help_text="Full fine-tunes to spend, over the lead predictor's order (with strategy).")
    strategy = serializers.ChoiceField(
        choices=[("top", "the budget's number of best by the lead, fully"),
                 ("halving", "successive halving over the lead's order")], required=False,
        help_text="How to spend the budget (default 'top').")
    seeds = serializers.IntegerField(
        required=False, default=1, min_value=1, max_value=10,
        help_text="Split seeds to repeat over: each checkpoint's truth is the mean with its "
                  "standard error, and the truth's stability is the Kendall tau between "
                  "seeds (the page offers 3).")

    def validate(self, data):
        if "strategy" in data and "budget" not in data:
            raise serializers.ValidationError({"budget": "Give a budget with a strategy."})
        return data

    def validate_checkpoints(self, value):
        for item in value:
            if isinstance(item, bool) or not isinstance(item, (int, str)):
                raise serializers.ValidationError("Give checkpoint ids or names.")
        return value


@extend_schema_field({**ID_OR_NAME, "description": "A checkpoint id or name."})
class CheckpointReferenceField(serializers.JSONField):
    """One checkpoint, by id or by name."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (int, str)) or data == "":
            raise serializers.ValidationError("Give a checkpoint id or name.")
        if isinstance(data, str) and "\x00" in data:  # PostgreSQL refuses them in a query
            raise serializers.ValidationError("Checkpoint names cannot hold NUL characters.")
        return data


class TransferCreateSerializer(serializers.Serializer):
    """One teacher (``teacher``) or several (``teachers``, used as ``mode`` says); the
    recipe's fields left out take the paper's defaults (5 epochs, 1e-4, temperature 1)."""

    evaluation = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    teacher = CheckpointReferenceField(required=False)
    teachers = serializers.ListField(child=CheckpointReferenceField(), required=False,
                                     min_length=1, max_length=MAX_TEACHERS)
    student = CheckpointReferenceField()
    variant = serializers.ChoiceField(choices=Transfer.Variant.choices,
                                      default=Transfer.Variant.SUPERVISED)
    mode = serializers.ChoiceField(choices=Transfer.Mode.choices,
                                   default=Transfer.Mode.SEQUENTIAL)
    order = serializers.ChoiceField(choices=Transfer.Order.choices,
                                    default=Transfer.Order.ASCENDING,
                                    help_text="Sequential: the teachers by held-out accuracy.")
    epochs = serializers.IntegerField(required=False, min_value=EPOCHS[0], max_value=EPOCHS[1])
    learning_rate = serializers.FloatField(required=False, min_value=LEARNING_RATES[0],
                                           max_value=LEARNING_RATES[1])
    temperature = serializers.FloatField(required=False, min_value=TEMPERATURES[0],
                                         max_value=TEMPERATURES[1])

    def validate(self, data):
        if ("teacher" in data) == ("teachers" in data):
            raise serializers.ValidationError("give either teacher or teachers")
        data["teachers"] = data.pop("teachers", None) or [data.pop("teacher")]
        return data


# Read side. The payload functions above (and transfer_payload) build the bodies the API
# and the pages share; the serializers below declare their shapes for the schema, and
# their to_representation is that payload. tests/test_api_schema.py checks each real body
# against the schema.

class EvaluationSummarySerializer(serializers.ModelSerializer):
    """One evaluation in the list."""

    url = serializers.HyperlinkedIdentityField(view_name="api-evaluation-detail")
    dataset_name = serializers.CharField(source="dataset.name", read_only=True)
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Evaluation
        fields = ["id", "dataset", "dataset_name", "status", "progress", "created_at", "url"]

    def get_progress(self, evaluation) -> float:
        return round(evaluation.progress, 4)


class CheckpointBriefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    architecture = serializers.CharField()
    feature_dim = serializers.IntegerField(allow_null=True)
    param_count = serializers.IntegerField(allow_null=True)
    source_top1 = serializers.FloatField(allow_null=True)


def _mapping(child, help_text):
    return serializers.DictField(child=child, help_text=help_text)


class TrueAccuracySerializer(serializers.Serializer):
    mean = serializers.FloatField(help_text="Held-out accuracy after transfer, %.")
    standard_error = serializers.FloatField(allow_null=True,
                                            help_text="Its binomial standard error, points.")


class RankedBySerializer(serializers.Serializer):
    name = serializers.CharField(help_text="A metric name, 'consensus', or "
                                           "'consensus:a+b+c' (the lead's members).")
    label = serializers.CharField()
    picked = serializers.BooleanField(help_text="Picked with ?rank= rather than the lead "
                                                "chosen by evidence.")


class ResultSerializer(serializers.Serializer):
    """One checkpoint of an evaluation: its progress, scores and ranks."""

    checkpoint = CheckpointBriefSerializer()
    status = serializers.ChoiceField(choices=Status.choices)
    message = serializers.CharField()
    images_done = serializers.IntegerField()
    images_total = serializers.IntegerField()
    features_cached = serializers.BooleanField()
    device = serializers.CharField()
    extraction_seconds = serializers.FloatField(allow_null=True)
    scoring_seconds = serializers.FloatField(allow_null=True)
    rank = serializers.IntegerField(allow_null=True,
                                    help_text="Rank by the evaluation's ranked_by (the lead "
                                              "predictor unless one was picked); ties share "
                                              "a rank.")
    lead_score = serializers.FloatField(
        allow_null=True, help_text="The lead predictor's score, higher is better (minus the "
                                   "mean rank when the lead is a consensus).")
    consensus_rank = serializers.IntegerField(
        allow_null=True, help_text="Mean rank over the established metrics that vote for it "
                                   "(not flagged for it), ranked again.")
    flagged = serializers.ListField(
        child=serializers.CharField(),
        help_text="Metrics whose value cannot be estimated for this checkpoint here (e.g. d "
                  "at least the smallest class): they do not vote for it.")
    true_accuracy = TrueAccuracySerializer(allow_null=True)
    diagnostics = _mapping(serializers.DictField(),
                           "Metric name -> what it says of its own value. TMI: "
                           "floored_share (k-th neighbour distances raised to its floor), "
                           "median_distance, floor, k.")
    scores = _mapping(serializers.FloatField(allow_null=True), "Metric name -> score.")
    ranks = _mapping(serializers.IntegerField(), "Metric name -> rank (1 is best).")
    errors = _mapping(serializers.CharField(), "Metric name -> why it has no score.")
    notes = _mapping(serializers.CharField(),
                     "Metric name -> how it was approximated (a subsample).")
    score_seconds = _mapping(serializers.FloatField(allow_null=True),
                             "Metric name -> seconds it took.")
    best_stage = serializers.CharField(allow_null=True)
    stage_scores = _mapping(_mapping(serializers.FloatField(allow_null=True), ""),
                            "Stage -> metric name -> score (with score_stages).")


class AgreementSerializer(serializers.Serializer):
    label = serializers.CharField()
    kind = serializers.CharField()
    higher_is_better = serializers.BooleanField()
    checkpoints = serializers.IntegerField()
    weighted_tau = serializers.FloatField(allow_null=True)
    kendall_tau = serializers.FloatField(allow_null=True)
    top1_relative_accuracy = serializers.FloatField(
        allow_null=True, help_text="True accuracy of its pick / the best; 1 when its pick is "
                                   "tied with the best within noise.")
    weighted_tau_interval = serializers.ListField(
        child=serializers.FloatField(), allow_null=True,
        help_text="90 % bootstrap interval of the weighted tau over checkpoints (a finished "
                  "truth of at least 4 checkpoints).")
    pick = serializers.CharField(allow_null=True, help_text="The checkpoint it puts first.")


class SpreadSerializer(serializers.Serializer):
    min = serializers.FloatField()
    max = serializers.FloatField()
    range = serializers.FloatField()
    mean_standard_error = serializers.FloatField(allow_null=True)


class TruthRunSerializer(serializers.Serializer):
    seed = serializers.IntegerField(help_text="The split seed.")
    learning_rate = serializers.FloatField(required=False)
    epochs = serializers.IntegerField(required=False, help_text="Epochs trained so far.")
    C = serializers.FloatField(required=False, help_text="The probe's C (mode probe).")
    val_accuracy = serializers.FloatField(help_text="On the validation part, %: what chooses.")
    test_accuracy = serializers.FloatField(required=False,
                                           help_text="On the held-out test part, %: never "
                                                     "used to choose.")
    diverged = serializers.BooleanField(required=False)


class TruthResultSerializer(serializers.Serializer):
    checkpoint = serializers.CharField()
    status = serializers.ChoiceField(choices=Status.choices)
    accuracy = serializers.FloatField(allow_null=True, help_text="The mean over seeds, %.")
    mean = serializers.FloatField(allow_null=True, help_text="The same: the mean over seeds.")
    standard_error = serializers.FloatField(
        allow_null=True, help_text="Across seeds; the binomial one of a single run.")
    runs = TruthRunSerializer(many=True, help_text="Every run of the search, every seed.")
    chosen = serializers.DictField(allow_null=True,
                                   help_text="{learning_rate, epochs} (or {C}) chosen on "
                                             "validation, the most frequent over seeds.")
    at_edge = serializers.BooleanField(allow_null=True,
                                       help_text="Whether a seed's choice sits at an edge of "
                                                 "what was searched (the search hit its bound).")
    message = serializers.CharField()
    seconds = serializers.FloatField(allow_null=True)
    details = serializers.DictField(help_text="Split sizes, the recipe, per-seed results, "
                                              "device.")


class BudgetSerializer(serializers.Serializer):
    strategy = serializers.CharField()
    budget = serializers.IntegerField()
    rungs = serializers.ListField(child=serializers.DictField(),
                                  help_text="[{epochs, checkpoints}] per rung, first to last.")
    rung = serializers.IntegerField(help_text="The rung being trained (0-based).")
    order = serializers.ListField(child=serializers.CharField(),
                                  help_text="The checkpoints in the lead predictor's order.")
    history = _mapping(serializers.ListField(child=serializers.DictField()),
                       "Checkpoint name -> [{rung, epochs, accuracy}] per rung it trained in.")
    best_found = serializers.CharField(allow_null=True)
    best_found_accuracy = serializers.FloatField(allow_null=True)
    regret = serializers.FloatField(allow_null=True,
                                    help_text="Points below the best of a full fine-tuning truth "
                                              "of the same data, where one exists.")
    full_truth_best = serializers.CharField(allow_null=True)


class TruthSerializer(serializers.Serializer):
    """The evaluation's ground truth: true accuracies and each metric's agreement."""

    status = serializers.ChoiceField(choices=Status.choices)
    mode = serializers.ChoiceField(choices=GroundTruth.Mode.choices)
    progress = serializers.FloatField()
    message = serializers.CharField()
    test_fraction = serializers.FloatField()
    seeds = serializers.IntegerField(help_text="Split seeds each checkpoint is measured over.")
    stability = serializers.FloatField(
        allow_null=True, help_text="Mean Kendall tau between the seeds' orders of the "
                                   "checkpoints (null with one seed).")
    tied = serializers.ListField(child=serializers.CharField(),
                                 help_text="Checkpoints within noise of the best (combined "
                                           "standard error).")
    best = serializers.CharField(allow_null=True)
    accuracy = _mapping(serializers.FloatField(), "Checkpoint name -> held-out accuracy, %.")
    standard_error = _mapping(serializers.FloatField(), "Checkpoint name -> its standard error.")
    spread = SpreadSerializer(allow_null=True)
    agreement = _mapping(AgreementSerializer(), "Metric name -> agreement with the truth.")
    results = TruthResultSerializer(many=True)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    budget = BudgetSerializer(allow_null=True, help_text="Verification on a budget.")


class RecommendationSerializer(serializers.Serializer):
    """Which checkpoint to take and how sure that is."""

    checkpoint = serializers.CharField(help_text="The checkpoint to take.")
    basis = serializers.CharField(help_text="What it rests on: true accuracy once measured, "
                                            "else the lead predictor.")
    margin = serializers.CharField()
    lead = serializers.CharField(allow_null=True,
                                 help_text="The lead predictor: a metric name, or "
                                           "'consensus:a+b+c'.")
    lead_label = serializers.CharField(allow_null=True)
    lead_basis = serializers.CharField(allow_null=True,
                                       help_text="Why it leads: chosen by agreement with the "
                                                 "site's ground truths, or the default.")
    p_first = _mapping(serializers.FloatField(),
                       "Checkpoint name -> share of resampled image sets in which the lead "
                       "ranks it first.")
    rank_interval = _mapping(serializers.ListField(child=serializers.IntegerField()),
                             "Checkpoint name -> [5th, 95th] percentile of its rank by the "
                             "lead over the resamples.")
    resamples = serializers.IntegerField(help_text="Resamples behind p_first (0: none).")
    consensus_p_first = _mapping(serializers.FloatField(), "The same for the consensus.")
    consensus_rank_interval = _mapping(serializers.ListField(child=serializers.IntegerField()),
                                       "The same for the consensus.")
    confidence = serializers.CharField(help_text="In words: 'first in 83 % of 30 resamples'.")
    tied_with = serializers.ListField(
        child=serializers.CharField(),
        help_text="Checkpoints tied first with it by its basis; the cautions say how it was "
                  "taken among them.")
    separation = serializers.CharField(help_text="What separates the tied: 'consensus rank 1 "
                                                 "against 4; ...'; empty when nothing does.")
    truth_note = serializers.CharField(help_text="A ground truth still being measured: 'k of "
                                                 "n measured; ...'. The answer claims no best "
                                                 "from it until it is complete.")
    first_by = serializers.IntegerField(help_text="Metrics that put it first.")
    metrics_voting = serializers.IntegerField(help_text="Metrics that voted for it.")
    flagged = serializers.ListField(child=serializers.CharField(),
                                    help_text="Metrics that cannot be estimated for it here.")
    cautions = serializers.ListField(child=serializers.CharField())


class EvaluationSerializer(serializers.Serializer):
    """An evaluation with every checkpoint's result, best first."""

    id = serializers.IntegerField()
    url = serializers.URLField()
    page = serializers.CharField(help_text="The evaluation's page on this site.")
    dataset = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Status.choices)
    progress = serializers.FloatField()
    message = serializers.CharField()
    metrics = serializers.ListField(child=serializers.CharField(),
                                    help_text="The metrics asked for; empty means all.")
    correctness_source = serializers.ChoiceField(choices=Evaluation.CorrectnessSource.choices)
    score_stages = serializers.BooleanField()
    truth_on_finish = serializers.CharField(help_text="Ground truth mode queued when it "
                                                      "finishes; empty for none.")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    duration_seconds = serializers.FloatField(allow_null=True)
    relative_to_set = serializers.ListField(
        child=serializers.CharField(),
        help_text="Metrics whose scores are relative to this set of checkpoints.")
    ranked_by = RankedBySerializer(allow_null=True, help_text="What 'rank' is.")
    results = ResultSerializer(many=True)
    complementarity = serializers.DictField(allow_null=True)
    truth = TruthSerializer(allow_null=True)
    recommendation = RecommendationSerializer(allow_null=True)
    leakage = serializers.DictField(
        child=serializers.CharField(),
        help_text="Checkpoints trained on this dataset, or on one with the same content hash "
                  "(target leakage), with the reason: their scores here flatter them.")

    def to_representation(self, evaluation):
        return evaluation_payload(evaluation, ranked_rows(evaluation),
                                  self.context.get("request"))


class EvaluationCreatedSerializer(EvaluationSerializer):
    """The evaluation just created, and the checkpoints "all" left out."""

    left_out = serializers.DictField(
        child=serializers.CharField(),
        help_text='Checkpoints that "all" left out because they were trained on this dataset '
                  "(or its twin), with the reason; empty when checkpoints were named.")


class TransferRecipeSerializer(serializers.Serializer):
    epochs = serializers.IntegerField()
    learning_rate = serializers.FloatField()
    temperature = serializers.FloatField()


class TransferStepSerializer(serializers.Serializer):
    """One teacher's part (a soup: each single-teacher run, then the soup, teacher null)."""

    index = serializers.IntegerField()
    teacher = serializers.CharField(allow_null=True)
    label = serializers.CharField()
    status = serializers.ChoiceField(choices=Status.choices)
    message = serializers.CharField()
    progress = serializers.FloatField()
    accuracy = serializers.FloatField(allow_null=True, help_text="Held-out, in %.")
    delta = serializers.DictField(allow_null=True,
                                  help_text="Against the initial student, in %.")
    flips = serializers.DictField(allow_null=True,
                                  help_text="Against every teacher, by name: positive and "
                                            "negative, in %.")
    seconds = serializers.FloatField(allow_null=True)
    details = serializers.DictField(help_text="The parallel form's `guided`: per candidate "
                                              "(the initial student first) and class, the "
                                              "train samples it guided.")


class TransferSerializer(serializers.Serializer):
    """A knowledge transfer (KL+DP) and, once done, its outcome."""

    id = serializers.IntegerField()
    url = serializers.URLField()
    evaluation = serializers.IntegerField()
    teacher = serializers.CharField(help_text="The first teacher asked for.")
    teachers = serializers.ListField(child=serializers.CharField(),
                                     help_text="Every teacher, in the order they ran.")
    student = serializers.CharField()
    variant = serializers.ChoiceField(choices=Transfer.Variant.choices)
    mode = serializers.ChoiceField(choices=Transfer.Mode.choices)
    order = serializers.ChoiceField(choices=Transfer.Order.choices, allow_null=True)
    recipe = TransferRecipeSerializer()
    steps = TransferStepSerializer(many=True)
    status = serializers.ChoiceField(choices=Status.choices)
    progress = serializers.FloatField()
    message = serializers.CharField()
    delta = serializers.DictField(allow_null=True, help_text="On held-out data, in %.")
    flips_before = serializers.DictField(allow_null=True)
    flips_after = serializers.DictField(allow_null=True)
    details = serializers.DictField()
    checkpoint = serializers.IntegerField(allow_null=True,
                                          help_text="The distilled student, a new checkpoint.")
    checkpoint_name = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)

    def to_representation(self, transfer):
        return transfer_payload(transfer, self.context.get("request"))


class MetricSerializer(serializers.Serializer):
    name = serializers.CharField()
    label = serializers.CharField()
    needs = serializers.ChoiceField(choices=["features", "source_probs"])
    higher_is_better = serializers.BooleanField()
    kind = serializers.ChoiceField(choices=["metric", "baseline"])
    reference = serializers.CharField()
    relative_to_set = serializers.BooleanField()
    sample_limit = serializers.IntegerField(allow_null=True)
