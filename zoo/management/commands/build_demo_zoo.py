import time

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from zoo.demo_zoo import DEMO_ZOO, build_zoo, recipes_named


class Command(BaseCommand):
    help = ("Train and register the demo zoo: small timm checkpoints of several families, "
            "widths, training lengths and augmentations, each on a bundled or procedural "
            "source task. Deterministic from --seed; checkpoints already built with the same "
            "recipe are skipped.")

    def add_arguments(self, parser):
        parser.add_argument("--seed", type=int, default=0)
        # Repeatable, and each takes several names, spaces or commas between them:
        # --only A B, --only A --only B and --only A,B all build A and B.
        parser.add_argument("--only", nargs="+", action="extend", metavar="NAME",
                            help=f"build only these checkpoints (of {len(DEMO_ZOO)}: "
                                 f"{', '.join(r.name for r in DEMO_ZOO)})")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, seed=0, only=None, no_progress=False, **options):
        if only:
            only = [name for names in only for name in names.split(",") if name]
        try:
            recipes = recipes_named(only)
        except KeyError as exc:
            raise CommandError(exc.args[0]) from None
        stream = self.stderr._out  # the raw stream: tqdm redraws its line in place
        started = time.monotonic()
        build_zoo(recipes, seed=seed, progress=None if no_progress else stream,
                  write=lambda line: tqdm.write(line, file=self.stdout._out))
        self.stdout.write(f"{len(recipes)} demo checkpoints ready "
                          f"({time.monotonic() - started:.0f} s).")
