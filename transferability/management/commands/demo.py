"""Set up and run the demo: the demo zoo, two bundled datasets, one real evaluation."""

import os
import secrets
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from transferability.bundled import (counting_archive, digits_archive, mnist_59_archive,
                                    photo_patches_archive)
from transferability.datasets import create_target_dataset
from transferability.models import Evaluation, GroundTruth, Status, TargetDataset
from transferability.results import ranked_rows
from transferability.submission import submit_evaluation
from transferability.verification import submit_truth, truth_payload
from zoo.demo_zoo import DEMO_ZOO, build_zoo
from zoo.models import Checkpoint

DEMO_SEED = 0
# Target datasets: name -> (archive file under VAR_DIR/bundled, how to write it).
DATASETS = {
    "MNIST digits 5-9": ("mnist_5-9.zip", mnist_59_archive),
    "scikit-learn digits": ("digits.zip", digits_archive),
    "photo patches": ("photo_patches.zip", photo_patches_archive),
    "counting dots": ("counting.zip", counting_archive),
}
# The evaluation the demo waits for and opens; the others, and every ground truth, go on in
# the background once the dashboard is served (the predictor page follows them).
EVALUATION_DATASET = "MNIST digits 5-9"
# The first demo checkpoints trained on all ten MNIST digits, the targets' among them.
RETIRED_CHECKPOINTS = ["demo-resnet.mnist_e3", "demo-convnext.mnist_e2",
                       "demo-efficientnet.mnist_e1", "demo-vit.mnist_e2",
                       "demo-resnet10t.mnist_e1"]


class Command(BaseCommand):
    help = ("Prepare the demo (admin user, the demo zoo of small checkpoints trained on "
            "bundled and procedural source tasks, four target datasets) and, with --evaluate, "
            "evaluate the demo zoo on every target through the worker, wait for the MNIST "
            "5-9 evaluation and queue every target's ground truth.")

    def add_arguments(self, parser):
        parser.add_argument("--evaluate", action="store_true",
                            help="submit an evaluation to the queue and wait until it finishes")
        parser.add_argument("--timeout", type=int, default=1800)

    def handle(self, *args, **options):
        if options["evaluate"]:
            return self.evaluate(options["timeout"])
        user = self.ensure_admin()
        self.ensure_checkpoints()
        for name in DATASETS:
            self.ensure_dataset(user, name)

    def ensure_admin(self):
        users = get_user_model()
        password_file = Path(settings.VAR_DIR) / "admin_password"
        user = users.objects.filter(username="admin").first()
        if user is None:
            password = secrets.token_urlsafe(12)
            user = users.objects.create_superuser("admin", "admin@localhost", password)
            password_file.write_text(password)
            password_file.chmod(0o600)
        elif password_file.exists() and user.check_password(password_file.read_text()):
            password = password_file.read_text()
        else:
            password = None
        if password:
            self.stdout.write(self.style.SUCCESS(f"Admin user: admin  password: {password}"))
        else:
            self.stdout.write("Admin user 'admin' exists; its password was changed by hand.")
        return user

    def ensure_checkpoints(self):
        stream = self.stderr._out  # the raw stream: tqdm redraws its line in place
        build_zoo(DEMO_ZOO, seed=DEMO_SEED, progress=stream,
                  write=lambda line: tqdm.write(f"  {line}", file=self.stdout._out))
        retired = Checkpoint.objects.filter(name__in=RETIRED_CHECKPOINTS, enabled=True)
        for name in retired.values_list("name", flat=True):
            self.stdout.write(f"Disabled {name}: it was trained on the demo's target digits.")
        retired.update(enabled=False)

    def ensure_dataset(self, user, name: str):
        if TargetDataset.objects.filter(owner=user, name=name).exists():
            self.stdout.write(f"Dataset '{name}' already imported.")
            return
        filename, write_archive = DATASETS[name]
        archive = write_archive(Path(settings.VAR_DIR) / "bundled" / filename)
        dataset = create_target_dataset(user, name, archive)
        self.stdout.write(f"Imported '{dataset.name}': {dataset.num_images} images, "
                          f"{dataset.num_classes} classes.")

    def evaluate(self, timeout: int):
        """Evaluate the demo zoo on every demo target, each with its ground truth measured
        as soon as it finishes; wait for the MNIST 5-9 evaluation only. Finished work from
        an earlier run is reused; the rest goes on in the worker while the dashboard is
        served (the predictor page follows it)."""
        user = get_user_model().objects.get(username="admin")
        datasets = {d.name: d for d in TargetDataset.objects.filter(owner=user,
                                                                    name__in=list(DATASETS))}
        if EVALUATION_DATASET not in datasets:
            raise CommandError("run 'manage.py demo' first")
        checkpoints = list(Checkpoint.objects.filter(name__in=[r.name for r in DEMO_ZOO]))
        evaluations = {}
        # The main target alone first, so that nothing queues before its last checkpoint and
        # its final step; the others once it is done, while the dashboard is served.
        for name in sorted(datasets, key=lambda n: n != EVALUATION_DATASET):
            evaluation = self.demo_evaluation(datasets[name], checkpoints)
            if evaluation is None:
                evaluation = submit_evaluation(user, datasets[name], checkpoints,
                                               truth_on_finish=GroundTruth.Mode.FINETUNE)
                self.stdout.write(f"Evaluation {evaluation.pk} of the demo zoo on '{name}' "
                                  f"submitted, its ground truth to follow.")
            elif evaluation.status == Status.DONE and not GroundTruth.objects.filter(
                    evaluation=evaluation).exclude(status=Status.FAILED).exists():
                submit_truth(evaluation, mode=GroundTruth.Mode.FINETUNE)
            evaluations[name] = evaluation
            if name == EVALUATION_DATASET:
                self.wait(evaluation, f"Evaluation {evaluation.pk}", timeout)
                if evaluation.status != Status.DONE:
                    raise CommandError(f"the demo evaluation failed: {evaluation.message}")
        main = evaluations[EVALUATION_DATASET]
        port = os.environ.get("PORT", "8000")
        waiting = [name for name, e in evaluations.items()
                   if not GroundTruth.objects.filter(evaluation=e, status=Status.DONE).exists()]
        if waiting:
            self.stdout.write(
                f"The true accuracy of every checkpoint on {', '.join(waiting)} (fine-tuning "
                f"on 70 %, testing on the rest) is measured in the background: "
                f"http://127.0.0.1:{port}/predictors/ follows it and shows which predictor "
                f"agrees best with the truth.")
        if GroundTruth.objects.filter(evaluation=main, status=Status.DONE).exists():
            self.report(main)
        self.stdout.write(f"Page: http://127.0.0.1:{port}{main.get_absolute_url()}")
        return None

    def demo_evaluation(self, dataset, checkpoints) -> Evaluation | None:
        """The latest evaluation of exactly the demo zoo on ``dataset`` that has not
        failed."""
        wanted = {c.pk for c in checkpoints}
        for evaluation in Evaluation.objects.filter(dataset=dataset).exclude(
                status=Status.FAILED).order_by("-created_at"):
            if set(evaluation.results.values_list("checkpoint_id", flat=True)) == wanted:
                return evaluation
        return None

    def wait(self, job, label: str, timeout: int) -> None:
        started = time.monotonic()
        with tqdm(total=100, desc=label, unit="%") as bar:
            while True:
                job.refresh_from_db()
                bar.n = round(100 * job.progress)
                bar.set_postfix_str(job.status)
                bar.refresh()
                if job.is_finished:
                    break
                if time.monotonic() - started > timeout:
                    raise CommandError(f"{label} did not finish in {timeout} s; is a worker "
                                       f"running?")
                time.sleep(1)
        self.stdout.write(f"{label}: {job.status} in {time.monotonic() - started:.0f} s. "
                          f"{job.message}")

    def report(self, evaluation) -> None:
        """The agreement table: how well each predictor ranked the true accuracies."""
        truth = truth_payload(evaluation, ranked_rows(evaluation))
        spread = truth["spread"]
        self.stdout.write(f"True accuracy after fine-tuning: {spread['min']:.1f} % to "
                          f"{spread['max']:.1f} % (standard error about "
                          f"{spread['mean_standard_error']:.1f} points).")
        self.stdout.write(f"{'predictor':<24} {'kind':<10} {'weighted tau':>12} "
                          f"{'Kendall tau':>12} {'top-1 rel.':>10}")
        rows = sorted(truth["agreement"].values(),
                      key=lambda a: -(a["weighted_tau"] if a["weighted_tau"] is not None
                                      else -9))
        for a in rows:
            cells = [f"{a[k]:.3f}" if a[k] is not None else "–"
                     for k in ("weighted_tau", "kendall_tau", "top1_relative_accuracy")]
            self.stdout.write(f"{a['label']:<24} {a['kind']:<10} {cells[0]:>12} {cells[1]:>12} "
                              f"{cells[2]:>10}")

