"""Headless ranking: the same path as the web app, run in this process, no worker needed."""

import json
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.core.serializers.json import DjangoJSONEncoder

from transferability.api.serializers import evaluation_payload
from transferability.datasets import ArchiveError, create_target_dataset
from transferability.leakage import leaked_among
from transferability.results import ranked_rows
from transferability.submission import SubmissionError, submit_evaluation
from workers.jobs import run_inline
from zoo.models import Checkpoint

CLI_USER = "cli"


class Command(BaseCommand):
    help = "Rank checkpoints on an ImageFolder zip and write the result as JSON."

    def add_arguments(self, parser):
        parser.add_argument("archive", type=Path, help="dataset .zip in ImageFolder layout")
        parser.add_argument("--checkpoint", action="append", default=[], dest="checkpoints",
                            help="checkpoint name (repeat); default: every enabled checkpoint")
        parser.add_argument("--metrics", default="",
                            help="comma-separated metric names; default: all that apply")
        parser.add_argument("--correctness", choices=["target", "source"], default="target")
        parser.add_argument("--stages", action="store_true", help="also score every stage")
        parser.add_argument("--json", type=Path, dest="json_path", help="write results here")

    def handle(self, *args, archive, checkpoints, metrics, correctness, stages, json_path,
               **options):
        if not archive.is_file():
            raise CommandError(f"{archive} is not a file")
        user, _ = get_user_model().objects.get_or_create(username=CLI_USER)
        chosen = self._checkpoints(checkpoints, user)
        try:
            dataset = create_target_dataset(user, archive.stem, archive)
        except ArchiveError as exc:
            raise CommandError(f"{archive}: {exc}") from None
        if not checkpoints:  # the default, like the API's "all": none trained on these images
            left_out = leaked_among(chosen, dataset)
            for name, reason in left_out.items():
                self.stdout.write(f"left out {name}: {reason} (name it to evaluate it anyway)")
            chosen = [c for c in chosen if c.name not in left_out]
        try:
            evaluation = submit_evaluation(
                user, dataset, chosen,
                metrics=[m.strip() for m in metrics.split(",") if m.strip()],
                correctness_source=correctness, score_stages=stages, enqueue_work=False,
            )
        except SubmissionError as exc:
            dataset.delete()
            raise CommandError(str(exc)) from None
        run_inline(evaluation.pk)
        evaluation.refresh_from_db()
        rows = ranked_rows(evaluation)
        payload = evaluation_payload(evaluation, rows)
        for row in rows:
            scores = ", ".join(f"{k}={v:.4g}" for k, v in row.scores.items() if v is not None)
            self.stdout.write(f"{row.rank or '-':>3}  {row.checkpoint.name}  "
                              f"[{row.result.status}] {scores or row.result.message}")
        if json_path:
            json_path.write_text(json.dumps(payload, cls=DjangoJSONEncoder, indent=2))
            self.stdout.write(f"wrote {json_path}")
        if evaluation.status != "done":
            raise CommandError(f"evaluation failed: {evaluation.message}")

    def _checkpoints(self, names: list[str], user) -> list[Checkpoint]:
        visible = Checkpoint.objects.visible_to(user)  # users' own checkpoints are theirs
        if not names:
            chosen = list(visible.filter(enabled=True))
            if not chosen:
                raise CommandError("the zoo has no enabled checkpoints")
            return chosen
        found = {c.name: c for c in visible.filter(name__in=names)}
        missing = [n for n in names if n not in found]
        if missing:
            raise CommandError(f"unknown checkpoints: {', '.join(missing)}")
        return [found[n] for n in names]
