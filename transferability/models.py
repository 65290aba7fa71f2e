"""Target datasets, evaluations and their results."""

from pathlib import Path

from django.conf import settings
from django.db import models
from django.urls import reverse

from zoo.models import Checkpoint


class TargetDataset(models.Model):
    """A labelled image dataset, unpacked into the dataset store in ImageFolder layout.

    An upload is stored as it arrives and the row starts ``ingesting``; a worker on the
    ``cpu`` queue validates and unpacks it (workers/ingest.py) and the row ends ``ready``,
    ``refused`` (the archive's fault: ``message`` says why, no files are kept) or
    ``failed`` (ours: a worker or disk problem, said in ``message``).
    """

    SKIPPED_KEPT = 100

    class State(models.TextChoices):
        INGESTING = "ingesting", "Ingesting"
        READY = "ready", "Ready"
        REFUSED = "refused", "Refused"
        FAILED = "failed", "Failed"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="datasets")
    name = models.CharField(max_length=200)
    store_dir = models.CharField(max_length=100, unique=True,
                                 help_text="Folder under MEDIA_ROOT/datasets.")
    class_names = models.JSONField(default=list)
    class_counts = models.JSONField(default=list)
    num_images = models.PositiveIntegerField(default=0)
    content_hash = models.CharField(max_length=64, db_index=True)
    archive_bytes = models.BigIntegerField(default=0)
    # Image sizes, colour modes and byte-identical duplicates, measured at upload
    # (transferability.datasets.image_statistics); empty for datasets from before.
    image_stats = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Ingest: state, progress over the archive's image entries, the reasons for a refusal,
    # the images skipped with a warning, and the claim fields of background work.
    state = models.CharField(max_length=12, choices=State.choices, default=State.READY,
                             db_index=True)
    message = models.TextField(blank=True)
    skipped = models.JSONField(default=list, blank=True,
                               help_text="Entries left out with a warning, with the reason: "
                                         "the first SKIPPED_KEPT of skipped_count.")
    skipped_count = models.PositiveIntegerField(default=0)
    stored_bytes = models.BigIntegerField(
        default=0, help_text="What the unpacked dataset takes in the store (the quota counts it).")
    ingest_done = models.PositiveIntegerField(default=0)
    ingest_total = models.PositiveIntegerField(default=0)
    upload_name = models.CharField(max_length=300, blank=True,
                                   help_text="The uploaded archive in storage, until ingested.")
    attempts = models.PositiveSmallIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    ingested_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("dataset-detail", args=[self.pk])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def is_ready(self) -> bool:
        return self.state == self.State.READY

    @property
    def root(self) -> Path:
        """A local folder with the dataset's files (fetched from the store if need be)."""
        from .dataset_store import local_root
        return local_root(self.store_dir)

    def delete(self, *args, **kwargs):
        from django.core.files.storage import default_storage

        from .dataset_store import remove
        store_dir, upload = self.store_dir, self.upload_name
        result = super().delete(*args, **kwargs)
        remove(store_dir)
        if upload:  # deleted while it was ingesting
            default_storage.delete(upload)
        return result


class Status(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    FINALIZING = "finalizing", "Finalizing"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class Evaluation(models.Model):
    """One request to score checkpoints on a target dataset."""

    class CorrectnessSource(models.TextChoices):
        TARGET = "target", "Linear probe on target labels"
        SOURCE = "source", "Checkpoints' own heads (labels are source classes)"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="evaluations")
    dataset = models.ForeignKey(TargetDataset, on_delete=models.CASCADE,
                                related_name="evaluations")
    checkpoints = models.ManyToManyField(Checkpoint, through="CheckpointResult",
                                         related_name="evaluations")
    metrics = models.JSONField(default=list, help_text="Metric names to compute.")
    correctness_source = models.CharField(max_length=10, choices=CorrectnessSource.choices,
                                          default=CorrectnessSource.TARGET)
    score_stages = models.BooleanField(default=False,
                                       help_text="Also score the pooled output of every stage.")
    # Ground truth to measure as soon as the evaluation finishes ("finetune" or "probe").
    truth_on_finish = models.CharField(max_length=10, blank=True, default="",
                                       help_text="Measure ground truth in this mode once "
                                                 "every checkpoint is done.")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING,
                              db_index=True)
    message = models.TextField(blank=True)
    complementarity = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Evaluation {self.pk} on {self.dataset}"

    def get_absolute_url(self) -> str:
        return reverse("evaluation-detail", args=[self.pk])

    @property
    def is_finished(self) -> bool:
        return self.status in (Status.DONE, Status.FAILED)

    @property
    def progress(self) -> float:
        """Fraction of the work done, from the checkpoints' image counts."""
        if self.is_finished:
            return 1.0
        results = list(self.results.all())
        if not results:
            return 0.0
        done = 0.0
        for result in results:
            if result.status in (Status.DONE, Status.FAILED):
                done += 1.0
            elif result.images_total:
                # Extraction is most of the work; scoring the rest.
                done += 0.9 * result.images_done / result.images_total
        return done / len(results)

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class CheckpointResult(models.Model):
    """The outcome of one checkpoint in one evaluation."""

    evaluation = models.ForeignKey(Evaluation, on_delete=models.CASCADE, related_name="results")
    # A checkpoint that was evaluated is disabled, not deleted: deleting it would rewrite
    # finished rankings and strand queued work.
    checkpoint = models.ForeignKey(Checkpoint, on_delete=models.RESTRICT, related_name="results")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    message = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Times a worker claimed it.")
    heartbeat_at = models.DateTimeField(null=True, blank=True,
                                        help_text="Last sign of life from the worker on it.")
    queued_at = models.DateTimeField(null=True, blank=True, db_index=True,
                                     help_text="When its task was sent; empty while it waits "
                                               "its turn (transferability.dispatch).")
    images_done = models.PositiveIntegerField(default=0)
    images_total = models.PositiveIntegerField(default=0)
    feature_dim = models.PositiveIntegerField(null=True, blank=True)
    device = models.CharField(max_length=40, blank=True)
    features_cached = models.BooleanField(default=False,
                                          help_text="Features came from the cache.")
    feature_key = models.CharField(max_length=64, blank=True)
    best_stage = models.CharField(max_length=40, blank=True)
    extraction_seconds = models.FloatField(null=True, blank=True)
    scoring_seconds = models.FloatField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["evaluation", "checkpoint__name"]
        constraints = [
            models.UniqueConstraint(fields=["evaluation", "checkpoint"],
                                    name="one_result_per_checkpoint"),
        ]

    def __str__(self) -> str:
        return f"{self.checkpoint} in evaluation {self.evaluation_id}"


class MetricScore(models.Model):
    """One metric's value for one checkpoint's features (pre-logits, or one stage)."""

    PRE_LOGITS = "pre_logits"

    result = models.ForeignKey(CheckpointResult, on_delete=models.CASCADE, related_name="scores")
    metric = models.CharField(max_length=40)
    layer = models.CharField(max_length=40, default=PRE_LOGITS)
    value = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    seconds = models.FloatField(null=True, blank=True)
    # "components": raw per-checkpoint parts of a metric relative to the candidate set
    # (value is set from them when the evaluation finishes); "note": how it was approximated.
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["result", "layer", "metric"]
        constraints = [
            models.UniqueConstraint(fields=["result", "metric", "layer"],
                                    name="one_score_per_metric_and_layer"),
        ]

    def __str__(self) -> str:
        return f"{self.metric}[{self.layer}]={self.value}"


class GroundTruth(models.Model):
    """How well an evaluation's checkpoints really transfer: measured on request ("verify").

    Each chosen checkpoint is transferred to the target on a stratified train split and its
    accuracy measured on the held-out rest (``TruthResult``); the evaluation's metrics are
    then judged against those accuracies (``transferability.verification``).
    """

    class Mode(models.TextChoices):
        FINETUNE = "finetune", "Full fine-tuning"
        PROBE = "probe", "Linear probe"

    evaluation = models.OneToOneField(Evaluation, on_delete=models.CASCADE, related_name="truth")
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.FINETUNE)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING,
                              db_index=True)
    message = models.TextField(blank=True)
    test_fraction = models.FloatField(default=0.3, help_text="Held-out share of each class.")
    seed = models.IntegerField(default=0, help_text="Seeds the split and the training.")
    seeds = models.PositiveSmallIntegerField(
        default=1, help_text="Split seeds (seed, seed + 1, ...): each checkpoint's truth is "
                             "the mean over them, with its standard error.")
    # On a budget (transferability.budget): "top" or "halving" over the lead's order, and
    # the plan: {"rungs": [{"epochs", "checkpoints"}], "rung": current, "order": [names],
    # "history": {name: [{"epochs", "accuracy"}]}}. Empty strategy: every chosen checkpoint.
    strategy = models.CharField(max_length=10, blank=True, default="")
    budget = models.PositiveSmallIntegerField(null=True, blank=True,
                                              help_text="Full fine-tunes' worth of training.")
    plan = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Ground truth ({self.mode}) of evaluation {self.evaluation_id}"

    @property
    def is_finished(self) -> bool:
        return self.status in (Status.DONE, Status.FAILED)

    @property
    def progress(self) -> float:
        if self.is_finished:
            return 1.0
        results = list(self.results.all())
        if not results:
            return 0.0
        active = [r for r in results if r.status != Status.DONE or r.accuracy is not None] \
            if self.plan.get("rungs") else results
        share = sum(r.status in (Status.DONE, Status.FAILED) for r in active) / max(len(active), 1)
        rungs = len(self.plan.get("rungs") or [None])
        return (self.plan.get("rung", 0) + share) / rungs


class TruthResult(models.Model):
    """One checkpoint's held-out accuracy after transfer to the target."""

    truth = models.ForeignKey(GroundTruth, on_delete=models.CASCADE, related_name="results")
    checkpoint = models.ForeignKey(Checkpoint, on_delete=models.RESTRICT,
                                   related_name="truth_results")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    message = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    accuracy = models.FloatField(null=True, blank=True,
                                 help_text="Held-out top-1 accuracy after transfer, %.")
    # The grid tried ({"learning_rate", "accuracy"} per run), split sizes, epochs, device.
    details = models.JSONField(default=dict, blank=True)
    seconds = models.FloatField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["truth", "checkpoint__name"]
        constraints = [
            models.UniqueConstraint(fields=["truth", "checkpoint"],
                                    name="one_truth_per_checkpoint"),
        ]

    def __str__(self) -> str:
        return f"{self.checkpoint} true accuracy {self.accuracy}"


class Transfer(models.Model):
    """Knowledge moved from a teacher into a student on an evaluation's target (KL+DP).

    The distilled student is saved as a new checkpoint (``result_checkpoint``) whose recipe
    records its lineage; it can be evaluated like any other.
    """

    class Variant(models.TextChoices):
        SUPERVISED = "supervised", "KL+DP with labels"
        UNSUPERVISED = "unsupervised", "KL+DP without labels"

    class Mode(models.TextChoices):
        """How several teachers are used (transferability.distillation); one teacher is the
        plain case of any of them."""
        SEQUENTIAL = "sequential", "one teacher after another"
        PARALLEL = "parallel", "all teachers at once, per sample the most confident"
        SOUP = "soup", "one run per teacher, weights averaged"

    class Order(models.TextChoices):
        ASCENDING = "ascending", "weakest teacher first"
        DESCENDING = "descending", "strongest teacher first"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="transfers")
    evaluation = models.ForeignKey(Evaluation, on_delete=models.CASCADE,
                                   related_name="transfers")
    teacher = models.ForeignKey(Checkpoint, on_delete=models.RESTRICT, related_name="+")
    student = models.ForeignKey(Checkpoint, on_delete=models.RESTRICT, related_name="+")
    variant = models.CharField(max_length=14, choices=Variant.choices,
                               default=Variant.SUPERVISED)
    # ``teacher`` is the first of the teachers asked for; every teacher has a step.
    mode = models.CharField(max_length=12, choices=Mode.choices, default=Mode.SEQUENTIAL)
    order = models.CharField(max_length=12, choices=Order.choices, default=Order.ASCENDING)
    # The recipe (the paper's defaults: 5 epochs, learning rate 1e-4, temperature 1).
    epochs = models.PositiveSmallIntegerField(default=5)
    learning_rate = models.FloatField(default=1e-4)
    temperature = models.FloatField(default=1.0)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING,
                              db_index=True)
    message = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    steps_done = models.PositiveIntegerField(default=0)
    steps_total = models.PositiveIntegerField(default=0)
    # On held-out data, in %: transfer_delta of the student after vs before, and the
    # student's flips against the teacher before and after ({"positive", "negative"}).
    delta = models.JSONField(null=True, blank=True)
    flips_before = models.JSONField(null=True, blank=True)
    flips_after = models.JSONField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)
    result_checkpoint = models.ForeignKey(Checkpoint, on_delete=models.SET_NULL, null=True,
                                          blank=True, related_name="distilled_by")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        names = " + ".join(t.name for t in self.teachers)
        return f"{names} -> {self.student} ({self.variant})"

    def get_absolute_url(self) -> str:
        return reverse("transfer-detail", args=[self.pk])

    @property
    def teachers(self) -> list:
        """The teachers, in the order they were asked for (the steps' order once run); a
        row made without steps has its one ``teacher``."""
        return [step.teacher for step in self.steps.all() if step.teacher_id] or [self.teacher]

    @property
    def is_finished(self) -> bool:
        return self.status in (Status.DONE, Status.FAILED)

    @property
    def progress(self) -> float:
        if self.is_finished:
            return 1.0
        return self.steps_done / self.steps_total if self.steps_total else 0.0


class TransferStep(models.Model):
    """One teacher's part of a transfer (for a soup, one single-teacher run, then the soup
    itself with no teacher), with what it did on the held-out split, in %."""

    transfer = models.ForeignKey(Transfer, on_delete=models.CASCADE, related_name="steps")
    index = models.PositiveSmallIntegerField()
    teacher = models.ForeignKey(Checkpoint, on_delete=models.RESTRICT, null=True, blank=True,
                                related_name="+")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    message = models.TextField(blank=True)
    steps_done = models.PositiveIntegerField(default=0)
    steps_total = models.PositiveIntegerField(default=0)
    accuracy = models.FloatField(null=True, blank=True)
    # transfer_delta against the initial student; flips against every teacher, by name.
    delta = models.JSONField(null=True, blank=True)
    flips = models.JSONField(null=True, blank=True)
    seconds = models.FloatField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["transfer", "index"]
        constraints = [models.UniqueConstraint(fields=["transfer", "index"],
                                               name="one_step_per_index")]

    def __str__(self) -> str:
        return f"step {self.index + 1} of transfer {self.transfer_id}"

    @property
    def label(self) -> str:
        return self.teacher.name if self.teacher_id else "soup of the runs above"
