"""Adding a checkpoint from the hub: by timm name ("resnet50.a1_in1k") or ``hf-hub:`` id.

What the row needs is read from the repository's ``config.json`` (the file timm writes when
it pushes a model, and reads when it loads one): the architecture, its keyword arguments,
the data config, the number of classes and their names. The licence comes from the model
card's metadata (``license:`` in README.md), else from the config. The
weights are not fetched here: a web request reads two small files once, with a single try
and the hub timeout, and a worker then fetches, checks and loads the weights
(:func:`queue_fetch`).

A timm name whose hub cannot be reached (offline, or the hub down) is still added from
timm's own registry, which knows its data config; an ``hf-hub:`` id cannot be.
"""

import json
import re

from django.db import IntegrityError, transaction

from .hub import fetch_file
from .models import Checkpoint, model_kwargs_problem
from .validation import QUEUED_MESSAGE
from .weights import WeightsError

__all__ = ["CurationError", "QueueUnavailable", "add_from_hub", "queue_fetch", "parse_reference",
           "FETCH_QUEUED", "PREFETCH_QUEUED"]

VALIDATE_TASK = "workers.tasks.validate_checkpoints"
PREFETCH_TASK = "workers.tasks.prefetch_checkpoints"
FETCH_QUEUED = "queued: a worker fetches and checks the weights"
# config.json and model cards are kilobytes; a larger one is not read by a web process.
MAX_CONFIG_BYTES = 1_000_000
PREFETCH_QUEUED = "queued: a worker fetches the weights into its cache"

_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")
_LICENSE = re.compile(r"^license:\s*['\"]?([\w.+-]+)['\"]?\s*$", re.MULTILINE)


class CurationError(ValueError):
    """Why a hub reference cannot be added, in words for the person who typed it."""


class QueueUnavailable(RuntimeError):
    """The task queue could not be reached: nothing was added."""


def parse_reference(text: str) -> tuple[str, str | None]:
    """(hub repository id, timm pretrained name or None) of what the user typed."""
    import timm

    text = (text or "").strip()
    if not text:
        raise CurationError("Give a timm name (resnet50.a1_in1k) or an hf-hub: id "
                            "(hf-hub:timm/resnet50.a1_in1k).")
    if text.startswith("hf-hub:"):
        repo_id = text.removeprefix("hf-hub:").strip()
        if not _REPO_ID.fullmatch(repo_id):
            raise CurationError(f"{text!r} is not an hf-hub: id: it should read "
                                f"hf-hub:<owner>/<name>.")
        return repo_id, None
    if text in timm.list_pretrained():
        cfg = timm.models.get_pretrained_cfg(text)
        repo_id = cfg.hf_hub_id or ""
        if repo_id.endswith("/"):
            repo_id += text
        if not repo_id:
            raise CurationError(f"timm names no hub repository for {text}: its weights are "
                                f"not on the hub.")
        return repo_id, text
    if "." not in text and text in timm.list_models():
        raise CurationError(f"{text} is an architecture; name its pretrained weights, e.g. "
                            f"{(timm.list_pretrained(text + '.*') or [text + '.<tag>'])[0]}.")
    if _REPO_ID.fullmatch(text):
        raise CurationError(f"{text!r}: write hub repositories as hf-hub:{text}.")
    raise CurationError(f"{text!r} is neither a pretrained name in timm's registry (timm "
                        f"{timm.__version__}) nor an hf-hub: id.")


def add_from_hub(reference: str, name: str = "", enabled: bool = True
                 ) -> tuple[Checkpoint, str]:
    """A new catalog row for a hub checkpoint, its fields read from the hub, and a worker
    asked to fetch and validate its weights: (the row, a note for the person adding it, ""
    unless its fields came from timm's registry because the hub could not be read).

    The row is created disabled and enabled (when ``enabled``) once its fetch is queued, so
    no evaluation takes it before. Raises CurationError for a reference that cannot be
    added, QueueUnavailable (the row deleted again) when the task queue cannot be reached."""
    repo_id, timm_name = parse_reference(reference)
    fields, note = _fields_from_hub(repo_id, timm_name)
    name = (name or "").strip() or timm_name or repo_id
    if len(name) > 200:
        raise CurationError("Names are at most 200 characters.")
    problem = model_kwargs_problem(fields.get("model_kwargs") or {})
    if problem:
        raise CurationError(f"{repo_id}: config.json asks for model arguments that are not "
                            f"allowed: {problem}")
    try:
        with transaction.atomic():
            checkpoint = Checkpoint.objects.create(name=name, enabled=False, curated=True,
                                                   **fields)
    except IntegrityError:
        raise CurationError(f"A checkpoint named {name} is in the zoo already.") from None
    try:
        queue_fetch([checkpoint.pk])
    except Exception as exc:  # nothing refers to the row yet: it goes
        checkpoint.delete()
        raise QueueUnavailable(f"Nothing added: the task queue could not be reached "
                               f"({exc}).") from exc
    if enabled:
        Checkpoint.objects.filter(pk=checkpoint.pk).update(enabled=True)
    checkpoint.refresh_from_db()
    return checkpoint, note


def queue_fetch(ids: list[int], prefetch: bool = False) -> None:
    """Ask a worker to fetch (``prefetch``: only fetch) or fetch and validate the rows;
    raises what the broker raises when it cannot be reached, having changed nothing."""
    from config.celery import app

    # The rows say "queued" before the task is sent: a fast worker's outcome is never
    # overwritten by it. Put back as they were when the queue cannot be reached.
    rows = Checkpoint.objects.filter(pk__in=ids)
    before = list(rows.values("pk", "fetch_message", "loads", "load_message"))
    hub_rows = rows.filter(weights_source=Checkpoint.WeightsSource.HUB)
    if prefetch:
        hub_rows.update(fetch_message=PREFETCH_QUEUED)
    else:
        hub_rows.update(fetch_message=FETCH_QUEUED)
        rows.update(loads=None, load_message=QUEUED_MESSAGE)
    try:
        app.send_task(PREFETCH_TASK if prefetch else VALIDATE_TASK, args=(list(ids),),
                      queue="gpu")
    except Exception:
        for row in before:
            Checkpoint.objects.filter(pk=row.pop("pk")).update(**row)
        raise


def _fields_from_hub(repo_id: str, timm_name: str | None) -> tuple[dict, str]:
    """The row's fields, and a note when they come from timm's registry instead."""
    try:
        config = _read_json(repo_id, "config.json")
    except CurationError as exc:
        if timm_name is None:
            raise
        return _from_timm_registry(timm_name), (f"Its fields come from timm's registry: the "
                                                f"hub's config.json could not be read ({exc}).")
    return _fields_from_config(repo_id, timm_name, config, _card_license(repo_id)), ""


def _read_json(repo_id: str, filename: str) -> dict:
    from huggingface_hub.errors import RemoteEntryNotFoundError

    try:
        _, path, _ = fetch_file(repo_id, repo_id, filename, tries=1,
                                max_bytes=MAX_CONFIG_BYTES)
    except RemoteEntryNotFoundError:
        raise CurationError(f"{repo_id} on the hub has no {filename}: timm cannot build it "
                            f"without one.") from None
    except WeightsError as exc:
        raise CurationError(str(exc)) from None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CurationError(f"{repo_id}: {filename} is not JSON ({exc}).") from None
    if not isinstance(data, dict):
        raise CurationError(f"{repo_id}: {filename} is not a JSON object.")
    return data


def _card_license(repo_id: str) -> str:
    """The ``license:`` of the model card's metadata, or "" (no card, or none given)."""
    try:
        _, path, _ = fetch_file(repo_id, repo_id, "README.md", tries=1,
                                max_bytes=MAX_CONFIG_BYTES)
        head = path.read_text(encoding="utf-8", errors="replace")[:20_000]
    except Exception:  # no card: no licence to show, nothing else is lost
        return ""
    if not head.startswith("---"):
        return ""
    front = head[3:].split("\n---", 1)[0]
    match = _LICENSE.search(front)
    return match.group(1) if match else ""


def _fields_from_config(repo_id: str, timm_name: str | None, config: dict,
                        card_license: str) -> dict:
    import timm

    from .timm_catalog import family_of, source_dataset_of

    architecture = config.get("architecture")
    if not isinstance(architecture, str) or not architecture:
        raise CurationError(f"{repo_id}: config.json names no architecture.")
    if architecture not in timm.list_models():
        raise CurationError(f"{repo_id}: config.json's architecture {architecture!r} is not "
                            f"one timm {timm.__version__} builds.")
    pretrained = config.get("pretrained_cfg") if isinstance(config.get("pretrained_cfg"),
                                                            dict) else {}
    tag = timm_name.partition(".")[2] if timm_name else ""
    try:
        num_classes = max(int(config.get("num_classes", pretrained.get("num_classes", 0)) or 0),
                          0)
        input_size = [int(v) for v in pretrained.get("input_size") or (3, 224, 224)]
        mean = [float(v) for v in pretrained.get("mean") or (0.485, 0.456, 0.406)]
        std = [float(v) for v in pretrained.get("std") or (0.229, 0.224, 0.225)]
        crop_pct = float(pretrained["crop_pct"]) if pretrained.get("crop_pct") else 0.875
        features = config.get("num_features")
        feature_dim = int(features) if features else None
    except (TypeError, ValueError) as exc:
        raise CurationError(f"{repo_id}: config.json has a value of the wrong kind ({exc}).") \
            from None
    if len(input_size) != 3 or len(mean) != input_size[0] or len(std) != input_size[0]:
        raise CurationError(f"{repo_id}: config.json's input_size, mean and std do not agree.")
    if not (1 <= input_size[0] <= 4 and all(8 <= v <= 4096 for v in input_size[1:])):
        raise CurationError(f"{repo_id}: config.json's input_size {input_size} is not an "
                            f"image size (1-4 channels, 8 to 4,096 pixels a side).")
    if num_classes > 1_000_000:
        raise CurationError(f"{repo_id}: config.json names {num_classes:,} classes.")
    labels = config.get("label_names")
    if not (isinstance(labels, list) and len(labels) == num_classes
            and all(isinstance(label, str) for label in labels)):
        labels = []
    model_args = config.get("model_args") if isinstance(config.get("model_args"), dict) else {}
    return {
        "architecture": architecture,
        "pretrained_tag": tag,
        "family": family_of(architecture)[:60],
        "weights_source": Checkpoint.WeightsSource.HUB,
        "hub_id": repo_id,
        "model_kwargs": model_args,
        "input_size": input_size,
        "interpolation": str(pretrained.get("interpolation") or "bicubic")[:20],
        "crop_pct": crop_pct,
        "crop_mode": str(pretrained.get("crop_mode") or "center")[:20],
        "mean": mean,
        "std": std,
        "num_classes": num_classes,
        "source_classes": labels,
        "feature_dim": feature_dim,
        "source_dataset": source_dataset_of(tag, num_classes)[:120],
        # The model card is the repository owner's word; timm copies its own default into
        # the pretrained config of whatever it pushes.
        "license": str(card_license or config.get("license") or pretrained.get("license")
                       or "")[:120],
    }


def _from_timm_registry(timm_name: str) -> dict:
    import timm

    from .timm_catalog import _fields

    fields = _fields(timm_name, timm.models.get_pretrained_cfg(timm_name).to_dict())
    fields.pop("name")
    return fields

