"""Target leakage: checkpoints whose weights were trained on the images they are judged on.

A student distilled on an evaluation's dataset (``workers.transfers.save_distilled``) has
learnt 70 % of its images with their labels. Scored on the same images, or on a twin with
the same content hash, it looks better than it would on new data: its rank says nothing
about transfer. Its recipe's lineage names the datasets it was trained on
(``Checkpoint.trained_on_datasets``), those of the checkpoints it came from included.

Such checkpoints are left out of an evaluation by default (the form's initial choice, the
API's "all"); one included anyway is flagged with the reason, computed from the lineage
whenever the evaluation is read, so the warning is always current.
"""

from __future__ import annotations

from zoo.models import Checkpoint

__all__ = ["leakage_cautions", "leakage_reason", "leaked_among", "leaked_checkpoints",
           "trained_on_entries"]


def trained_on_entries(dataset, *parents: Checkpoint) -> list[dict]:
    """The lineage's ``trained_on`` for weights trained on ``dataset`` from ``parents``
    (a teacher and a student): this dataset, then every dataset a parent was trained on."""
    entries = [{"id": dataset.pk, "name": dataset.name, "content_hash": dataset.content_hash}]
    seen = {(dataset.pk, dataset.content_hash)}
    for parent in parents:
        for entry in parent.trained_on_datasets:
            key = (entry.get("id"), entry.get("content_hash"))
            if key not in seen:
                seen.add(key)
                entries.append({**entry, "via": entry.get("via") or parent.name})
    return entries


def leakage_reason(checkpoint: Checkpoint, dataset) -> str:
    """Why ``checkpoint``'s scores on ``dataset`` flatter it; "" when they do not."""
    entry = checkpoint.trained_on(dataset)
    if entry is None:
        return ""
    if entry.get("id") == dataset.pk:
        where = "this dataset"
    else:
        where = (f"{entry.get('name') or 'another dataset'}, the same images (identical "
                 f"content hash)")
    via = f"through {entry['via']}, " if entry.get("via") else ""
    return f"{via}distilled on {where}"


def leaked_among(checkpoints, dataset) -> dict[str, str]:
    """{checkpoint name: reason} of ``checkpoints`` (a queryset or any iterable) trained on
    ``dataset`` or on a dataset with the same content hash."""
    if hasattr(checkpoints, "filter"):  # only checkpoints with a lineage can have leaked
        checkpoints = checkpoints.filter(recipe__has_key="lineage")
    found = {}
    for checkpoint in checkpoints:
        reason = leakage_reason(checkpoint, dataset)
        if reason:
            found[checkpoint.name] = reason
    return found


def leaked_checkpoints(evaluation) -> dict[str, str]:
    """{checkpoint name: reason} of the evaluation's checkpoints trained on its dataset."""
    return leaked_among(Checkpoint.objects.filter(results__evaluation=evaluation),
                        evaluation.dataset)


def leakage_cautions(leakage: dict[str, str], recommended: str | None = None) -> list[str]:
    """Sentences for the recommendation's cautions: first the recommended checkpoint's own
    leakage (the answer itself is suspect), then how many others leaked."""
    cautions = []
    if recommended in leakage:
        cautions.append(f"{recommended} was trained on this data ({leakage[recommended]}): "
                        f"its rank measures memory of these images, not transfer")
    others = [name for name in leakage if name != recommended]
    if others:
        cautions.append(f"{len(others)} other checkpoint{'s' if len(others) > 1 else ''} "
                        f"({', '.join(others)}) {'were' if len(others) > 1 else 'was'} "
                        f"trained on this data: {'their' if len(others) > 1 else 'its'} "
                        f"ranks flatter {'them' if len(others) > 1 else 'it'}")
    return cautions
