"""Set up and run the demo: local checkpoints, a bundled dataset, one real evaluation."""

import secrets
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from transferability.bundled import digits_archive
from transferability.datasets import create_target_dataset
from transferability.models import TargetDataset
from transferability.submission import submit_evaluation
from zoo.models import Checkpoint
from zoo.pretraining import DEMO_RECIPES, mnist_tensors, pretrain_and_register

DATASET_NAME = "scikit-learn digits"


class Command(BaseCommand):
    help = ("Prepare the demo (admin user, checkpoints pretrained on the bundled MNIST sample, "
            "the bundled digits dataset) and, with --evaluate, run one evaluation through the "
            "worker and wait for it.")

    def add_arguments(self, parser):
        parser.add_argument("--evaluate", action="store_true",
                            help="submit an evaluation to the queue and wait until it finishes")
        parser.add_argument("--timeout", type=int, default=1800)

    def handle(self, *args, **options):
        if options["evaluate"]:
            return self.evaluate(options["timeout"])
        user = self.ensure_admin()
        self.ensure_checkpoints()
        self.ensure_dataset(user)

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
        missing = [r for r in DEMO_RECIPES if not Checkpoint.objects.filter(name=r.name).exists()]
        if not missing:
            self.stdout.write(f"{len(DEMO_RECIPES)} demo checkpoints already in the zoo.")
            return
        images, labels = mnist_tensors()
        weights_dir = Path(settings.MEDIA_ROOT) / "weights"
        for recipe in tqdm(missing, desc="Pretraining demo checkpoints on MNIST", unit="model"):
            checkpoint = pretrain_and_register(recipe, weights_dir, images, labels)
            tqdm.write(f"  {checkpoint.name}: {checkpoint.param_count:,} parameters, "
                       f"d={checkpoint.feature_dim}, source top-1 {checkpoint.source_top1:.1f}%")

    def ensure_dataset(self, user):
        if TargetDataset.objects.filter(owner=user, name=DATASET_NAME).exists():
            self.stdout.write(f"Dataset '{DATASET_NAME}' already imported.")
            return
        archive = digits_archive(Path(settings.VAR_DIR) / "bundled" / "digits.zip")
        dataset = create_target_dataset(user, DATASET_NAME, archive)
        self.stdout.write(f"Imported '{dataset.name}': {dataset.num_images} images, "
                          f"{dataset.num_classes} classes.")

    def evaluate(self, timeout: int):
        user = get_user_model().objects.get(username="admin")
        dataset = TargetDataset.objects.filter(owner=user, name=DATASET_NAME).first()
        if dataset is None:
            raise CommandError("run 'manage.py demo' first")
        checkpoints = Checkpoint.objects.filter(name__in=[r.name for r in DEMO_RECIPES])
        evaluation = submit_evaluation(user, dataset, checkpoints)
        self.stdout.write(f"Evaluation {evaluation.pk} submitted; waiting for the worker.")
        started = time.monotonic()
        with tqdm(total=100, desc=f"Evaluation {evaluation.pk}", unit="%") as bar:
            while True:
                evaluation.refresh_from_db()
                bar.n = round(100 * evaluation.progress)
                bar.set_postfix_str(evaluation.status)
                bar.refresh()
                if evaluation.is_finished:
                    break
                if time.monotonic() - started > timeout:
                    raise CommandError(f"evaluation {evaluation.pk} did not finish in {timeout} s; "
                                       f"is a worker running?")
                time.sleep(1)
        self.stdout.write(f"Evaluation {evaluation.pk}: {evaluation.status} in "
                          f"{time.monotonic() - started:.0f} s. {evaluation.message}")
        if evaluation.status != "done":
            raise CommandError("the demo evaluation failed")
        return None
