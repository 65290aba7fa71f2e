from django.db import migrations


def record_what_students_were_trained_on(apps, schema_editor):
    """A student distilled before lineages named their datasets: its ``trained_on`` (its
    transfer's dataset, then its parents'), its dataset id, and its target accuracy moved out
    of ``source_top1`` into ``target_top1``. Oldest first, so parents are done first."""
    Checkpoint = apps.get_model("zoo", "Checkpoint")
    Transfer = apps.get_model("transferability", "Transfer")
    Evaluation = apps.get_model("transferability", "Evaluation")
    trained_on = {}  # checkpoint name -> its trained_on, as written here
    for checkpoint in Checkpoint.objects.filter(recipe__lineage__has_key="transfer").order_by("pk"):
        lineage = dict(checkpoint.recipe["lineage"])
        transfer = (Transfer.objects.select_related("evaluation__dataset")
                    .filter(pk=lineage["transfer"]).first())
        dataset = transfer.evaluation.dataset if transfer else None
        if dataset is None and lineage.get("evaluation"):
            evaluation = (Evaluation.objects.select_related("dataset")
                          .filter(pk=lineage["evaluation"]).first())
            dataset = evaluation.dataset if evaluation else None
        if "trained_on" not in lineage:
            entries = [{"id": dataset.pk if dataset else None,
                        "name": lineage.get("dataset") or (dataset.name if dataset else ""),
                        "content_hash": lineage.get("dataset_hash")
                        or (dataset.content_hash if dataset else "")}]
            for parent in (lineage.get("student"), lineage.get("teacher")):
                for entry in trained_on.get(parent, []):
                    if all((e["id"], e["content_hash"]) != (entry["id"], entry["content_hash"])
                           for e in entries):
                        entries.append({**entry, "via": entry.get("via") or parent})
            lineage["trained_on"] = entries
        if dataset is not None:
            lineage.setdefault("dataset_id", dataset.pk)
        if "target_top1" not in lineage:
            accuracy = ((transfer.delta or {}).get("accuracy_after") if transfer else None)
            accuracy = checkpoint.source_top1 if accuracy is None else accuracy
            lineage["target_top1"] = round(accuracy, 2) if accuracy is not None else None
        trained_on[checkpoint.name] = lineage["trained_on"]
        Checkpoint.objects.filter(pk=checkpoint.pk).update(
            recipe={**checkpoint.recipe, "lineage": lineage}, source_top1=None)


def target_accuracy_back_into_source_top1(apps, schema_editor):
    Checkpoint = apps.get_model("zoo", "Checkpoint")
    for checkpoint in Checkpoint.objects.filter(recipe__lineage__has_key="target_top1"):
        Checkpoint.objects.filter(pk=checkpoint.pk).update(
            source_top1=checkpoint.recipe["lineage"]["target_top1"])


class Migration(migrations.Migration):

    dependencies = [
        ('zoo', '0003_checkpoint_owner'),
        ('transferability', '0006_transfer'),
    ]

    operations = [
        migrations.RunPython(record_what_students_were_trained_on,
                             target_accuracy_back_into_source_top1),
    ]
