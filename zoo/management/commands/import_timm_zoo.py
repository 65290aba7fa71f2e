import time

import timm
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from zoo.timm_catalog import import_catalog


class Command(BaseCommand):
    help = ("Create or refresh one checkpoint per pretrained tag in timm's registry, offline: "
            "no weights are downloaded. Rows curated by hand are left alone.")

    def add_arguments(self, parser):
        parser.add_argument("--pattern", help="shell-style filter on 'arch.tag', as "
                                              "timm.list_pretrained takes it, e.g. 'resnet1*'")
        parser.add_argument("--limit", type=int, help="import at most this many tags")
        parser.add_argument("--jobs", type=int, help="processes for the meta-device builds "
                                                     "(default: one per CPU for large imports)")
        parser.add_argument("--no-sizes", action="store_true",
                            help="skip parameter counts and feature widths (much faster)")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")
        parser.add_argument("--enable", action="store_true",
                            help="enable the rows this run creates (default: created disabled; "
                                 "enable the ones you want in the admin)")

    def handle(self, *args, pattern=None, limit=None, jobs=None, no_sizes=False,
               no_progress=False, enable=False, **options):
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1")
        if jobs is not None and jobs < 1:
            raise CommandError("--jobs must be at least 1")
        stream = self.stderr._out  # the raw stream: tqdm redraws its line in place

        def warn(name: str, message: str, skipped: bool) -> None:
            tqdm.write(f"warning: {name}: {message}" + (" (skipped)" if skipped else ""),
                       file=stream)

        started = time.monotonic()
        summary = import_catalog(pattern, limit, measure_sizes=not no_sizes, jobs=jobs,
                                 progress=None if no_progress else stream, on_problem=warn,
                                 enable_new=enable)
        total = (summary.created + summary.updated + summary.unchanged + summary.curated_skipped
                 + summary.failed)
        if not total:
            self.stderr.write(f"no pretrained tags in timm {timm.__version__} match {pattern!r}")
        self.stdout.write(f"{summary} ({time.monotonic() - started:.1f}s)")

