"""Measure image sizes and duplicates of stored datasets that predate upload-time statistics."""

from django.core.management.base import BaseCommand, CommandError

from transferability.datasets import STATS_VERSION, dataset_statistics
from transferability.models import TargetDataset


class Command(BaseCommand):
    help = ("Measure image sizes, colour modes and byte-identical duplicates of stored "
            "datasets (those without them, or the ids given).")

    def add_arguments(self, parser):
        parser.add_argument("ids", nargs="*", type=int, help="dataset ids (default: all missing)")
        parser.add_argument("--force", action="store_true", help="measure again")

    def handle(self, *args, ids, force, **options):
        datasets = TargetDataset.objects.all().order_by("pk")
        if ids:
            datasets = datasets.filter(pk__in=ids)
            missing = set(ids) - set(datasets.values_list("pk", flat=True))
            if missing:
                raise CommandError(f"no dataset with id {', '.join(map(str, sorted(missing)))}")
        for dataset in datasets:
            if not force and (dataset.image_stats or {}).get("version") == STATS_VERSION:
                continue
            try:
                stats = dataset_statistics(dataset)
            except (OSError, ValueError, KeyError) as exc:
                self.stderr.write(f"dataset {dataset.pk} ({dataset.name}): {exc}")
                continue
            TargetDataset.objects.filter(pk=dataset.pk).update(image_stats=stats)
            self.stdout.write(f"dataset {dataset.pk} ({dataset.name}): {stats['images']} images, "
                              f"{stats['distinct_sizes']} sizes, "
                              f"{stats['duplicates']['extra']} duplicates")
