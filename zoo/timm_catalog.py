"""The zoo from timm's registry: one catalog entry per pretrained tag, without any weights.

``catalog_entries`` reads what timm knows offline (the pretrained config of each tag) and
measures each network on the meta device (parameters and feature width, no memory, no
download). ``import_catalog`` writes the entries to the Checkpoint table: new tags are
created, changed ones updated, unchanged and hand-curated rows left alone.

Sizes are measured once per distinct network (many tags share one), in a pool of processes
for large imports, and remembered in a JSON file per timm/torch version so that a re-run or
a refresh from the admin measures nothing again.

The module imports no Django at load time: the measuring processes import it bare.
"""

import json
import logging
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from functools import cache
from multiprocessing import get_context
from pathlib import Path

import timm
import torch
from timm.models import get_pretrained_cfg
from torch.overrides import TorchFunctionMode
from tqdm import tqdm

log = logging.getLogger(__name__)

# The Checkpoint fields an import owns; anything else (enabled, weights files, validation
# results, source classes) is the admin's or the workers'.
CATALOG_FIELDS = (
    "architecture", "pretrained_tag", "family", "weights_source", "hub_id", "input_size",
    "interpolation", "crop_pct", "crop_mode", "mean", "std", "num_classes", "source_dataset",
    "source_top1", "license",
)
SIZE_FIELDS = ("feature_dim", "param_count")

# Dataset names as they appear in timm's pretrained tags, e.g. "augreg_in21k_ft_in1k".
SOURCE_DATASETS = {
    "in1k": "ImageNet-1k", "in12k": "ImageNet-12k", "in21k": "ImageNet-21k",
    "in22k": "ImageNet-22k", "inw21k": "ImageNet-21k (winter 2021)",
    # self-supervised pretraining on ImageNet-1k images
    "mae": "ImageNet-1k", "fcmae": "ImageNet-1k", "dino": "ImageNet-1k",
    "laion2b": "LAION-2B", "laion400m": "LAION-400M", "laiona": "LAION-Aesthetics",
    "openai": "OpenAI WIT-400M", "webli": "WebLI", "jft": "JFT-300M", "ig1b": "Instagram-1B",
    "yfcc100m": "YFCC-100M", "yfcc15m": "YFCC-15M", "datacomp1b": "DataComp-1B",
    "datacompxl": "DataComp-XL", "dfn2b": "DFN-2B", "dfn5b": "DFN-5B", "dfndr2b": "DFNDR-2B",
    "merged2b": "Merged-2B", "metaclip_2pt5b": "MetaCLIP-2.5B", "metaclip_400m": "MetaCLIP-400M",
    "metaclip_altogether": "MetaCLIP Altogether", "metaclip2_worldwide": "MetaCLIP 2 Worldwide",
    "lvd142m": "LVD-142M", "lvd1689m": "LVD-1689M", "cc12m": "CC-12M", "sa1b": "SA-1B",
    "m38m": "Merged-38M", "m30m": "Merged-30M", "sat493m": "SAT-493M", "bamboo": "Bamboo",
    "seer": "Instagram (SEER)", "swag": "Instagram (SWAG)",
}
# Tags that name no dataset: the size of the source head often still tells.
DATASET_BY_CLASSES = {
    1000: "ImageNet-1k", 11821: "ImageNet-12k", 21843: "ImageNet-21k", 21841: "ImageNet-22k",
    11221: "ImageNet-21k-P",
}
_DATASET_TOKENS = re.compile(
    "(?:^|_)(" + "|".join(sorted(map(re.escape, SOURCE_DATASETS), key=len, reverse=True))
    + ")(?=_|$)"
)

# Below this many networks to measure, starting processes costs more than it saves.
_MIN_BUILDS_PER_PROCESS = 24


@dataclass
class ImportSummary:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    curated_skipped: int = 0
    failed: int = 0  # tags that could not be read at all: skipped
    sizes_unknown: int = 0  # imported, but the meta-device build failed

    def __str__(self) -> str:
        line = (f"created {self.created}, updated {self.updated}, unchanged {self.unchanged}, "
                f"curated skipped {self.curated_skipped}, failed {self.failed}")
        if self.sizes_unknown:
            line += f", sizes unknown {self.sizes_unknown}"
        return line


# on_problem(name, message, skipped): skipped is False when the entry is still yielded.
ProblemHandler = Callable[[str, str, bool], None]


def _log_problem(name: str, message: str, skipped: bool) -> None:
    log.warning("%s: %s%s", name, message, " (skipped)" if skipped else "")


def catalog_entries(pattern: str | None = None, limit: int | None = None, *,
                    names: Iterable[str] | None = None, measure_sizes: bool = True,
                    jobs: int | None = None, sizes_cache: Path | None = None,
                    progress=None, on_problem: ProblemHandler = _log_problem) -> Iterator[dict]:
    """Yield one dict of Checkpoint fields per pretrained tag in timm's registry.

    ``pattern`` is a shell-style filter on "arch.tag" (timm's ``list_pretrained``); ``names``
    picks exact "arch.tag" names instead. ``limit`` keeps the first N in timm's order.
    With ``measure_sizes`` the entries carry ``feature_dim`` and ``param_count`` from a
    meta-device build; an entry whose build fails comes without them and is reported to
    ``on_problem``. ``progress`` is a stream for a tqdm bar, or None for none. Entries come
    in the order their sizes become known, not in timm's order.
    """
    tags = _select(pattern, limit, names, on_problem)
    pending: dict[str, list[dict]] = {}  # network key -> entries waiting for its sizes
    builds: dict[str, str] = {}  # network key -> a model name that builds it
    bar = tqdm(total=len(tags), desc="timm zoo", unit="tag", file=progress,
               disable=progress is None, dynamic_ncols=True)
    try:
        for name in tags:
            try:
                cfg = get_pretrained_cfg(name)
                if cfg is None:
                    raise ValueError("timm has no pretrained config for it")
                cfg = cfg.to_dict()
                entry, key = _fields(name, cfg), _network_key(cfg)
            except Exception as exc:  # a broken registry entry never stops the others
                on_problem(name, f"cannot read its pretrained config: {_oneline(exc)}", True)
                bar.update()
                continue
            if not measure_sizes:
                bar.update()
                yield entry
                continue
            pending.setdefault(key, []).append(entry)
            builds.setdefault(key, name)
        if not measure_sizes:
            return

        known = _read_sizes(sizes_cache)
        missing = [key for key in builds if key not in known]
        for key in [k for k in builds if k in known]:
            yield from _with_sizes(pending.pop(key), known[key], bar, on_problem)
        for key, sizes in _measure_all({k: builds[k] for k in missing}, jobs):
            known[key] = sizes
            yield from _with_sizes(pending.pop(key), sizes, bar, on_problem)
        if missing:
            _write_sizes(sizes_cache, known)
    finally:
        bar.close()


def import_catalog(pattern: str | None = None, limit: int | None = None, *,
                   names: Iterable[str] | None = None, measure_sizes: bool = True,
                   jobs: int | None = None, sizes_cache: Path | None = None,
                   progress=None, on_problem: ProblemHandler = _log_problem,
                   enable_new: bool = False) -> ImportSummary:
    """Create or update one Checkpoint per pretrained tag; curated rows are never touched.

    New rows are disabled unless ``enable_new``: "every enabled checkpoint" is what an
    evaluation takes by default, and a thousand hub downloads is rarely what was meant.

    Only rows whose fields differ are written (``updated_at`` moves only for them), so a
    second run over the same registry reports everything unchanged. ``sizes_cache``
    defaults to a file under ``ZOORANK_CACHE_DIR``.
    """
    from django.conf import settings
    from django.db import transaction
    from django.utils import timezone

    from .models import Checkpoint

    summary = ImportSummary()

    def count_problem(name: str, message: str, skipped: bool) -> None:
        if skipped:
            summary.failed += 1
        else:
            summary.sizes_unknown += 1
        on_problem(name, message, skipped)

    if sizes_cache is None:
        sizes_cache = default_sizes_cache(Path(settings.ZOORANK_CACHE_DIR))
    entries = list(catalog_entries(
        pattern, limit, names=names, measure_sizes=measure_sizes, jobs=jobs,
        sizes_cache=sizes_cache, progress=progress, on_problem=count_problem,
    ))
    existing = _existing_rows(Checkpoint, [e["name"] for e in entries])
    now = timezone.now()
    to_create, to_update = [], []
    for entry in entries:
        row = existing.get(entry["name"])
        if row is None:
            to_create.append(Checkpoint(**entry, enabled=enable_new))
        elif row.curated:
            summary.curated_skipped += 1
        else:
            changed = [f for f, value in entry.items() if getattr(row, f) != value]
            if changed:
                for field in changed:
                    setattr(row, field, entry[field])
                row.updated_at = now  # bulk_update skips auto_now
                to_update.append(row)
            else:
                summary.unchanged += 1
    fields = CATALOG_FIELDS + (SIZE_FIELDS if measure_sizes else ()) + ("updated_at",)
    with transaction.atomic():
        Checkpoint.objects.bulk_create(to_create, batch_size=500)
        Checkpoint.objects.bulk_update(to_update, fields, batch_size=200)
    summary.created, summary.updated = len(to_create), len(to_update)
    return summary


def default_sizes_cache(cache_dir: Path) -> Path:
    return cache_dir / "timm_sizes" / f"timm-{timm.__version__}-torch-{torch.__version__}.json"


def family_of(architecture: str) -> str:
    """The timm module that defines the architecture, e.g. "resnet", "vision_transformer"."""
    return _module_by_architecture().get(architecture) or architecture.split("_")[0]


def source_dataset_of(tag: str, num_classes: int) -> str:
    """Readable training data of a tag, oldest first: "LAION-2B → ImageNet-12k → ImageNet-1k"."""
    names: list[str] = []
    for match in _DATASET_TOKENS.finditer(tag):
        name = SOURCE_DATASETS[match.group(1)]
        if not names or names[-1] != name:
            names.append(name)
    if not names and num_classes in DATASET_BY_CLASSES:
        names.append(DATASET_BY_CLASSES[num_classes])
    return " → ".join(names)


def feature_dim_of(model: torch.nn.Module) -> int:
    """Width of the features the workers extract: ``forward_head(pre_logits=True)``."""
    return int(getattr(model, "head_hidden_size", None) or model.num_features)


def _select(pattern, limit, names, on_problem) -> list[str]:
    available = timm.list_pretrained(pattern) if pattern else timm.list_pretrained()
    if names is not None:
        wanted = list(dict.fromkeys(names))
        known = set(available)
        for name in wanted:
            if name not in known:
                on_problem(name, "not a pretrained tag in timm's registry", True)
        available = [n for n in wanted if n in known]
    return available[:limit] if limit is not None else available


def _fields(name: str, cfg: dict) -> dict:
    architecture, _, tag = name.partition(".")
    tag = tag or cfg.get("tag") or ""
    num_classes = max(int(cfg.get("num_classes") or 0), 0)
    hub_id = cfg.get("hf_hub_id") or ""
    if hub_id.endswith("/"):  # timm's shorthand for "this org, this model's own name"
        hub_id += name
    return {
        "name": name,
        "architecture": architecture,
        "pretrained_tag": tag,
        "family": family_of(architecture)[:60],
        "weights_source": "hub",
        "hub_id": hub_id,
        "input_size": [int(v) for v in cfg["input_size"]],
        "interpolation": cfg.get("interpolation") or "bicubic",
        "crop_pct": float(cfg["crop_pct"]) if cfg.get("crop_pct") is not None else 0.875,
        "crop_mode": cfg.get("crop_mode") or "center",
        "mean": [float(v) for v in cfg["mean"]],
        "std": [float(v) for v in cfg["std"]],
        "num_classes": num_classes,
        "source_dataset": source_dataset_of(tag, num_classes)[:120],
        # timm's wheel ships no results tables, so there is nothing cheap to read it from.
        "source_top1": None,
        "license": (cfg.get("license") or "")[:120],
    }


def _network_key(cfg: dict) -> str:
    """What decides the network timm builds for a tag (see timm's _update_default_model_kwargs)."""
    input_size = cfg.get("input_size") or (3, 224, 224)
    img_size = "x".join(map(str, input_size[1:])) if cfg.get("fixed_input_size") else ""
    return (f"{cfg['architecture']}|classes={cfg.get('num_classes')}|"
            f"pool={cfg.get('global_pool')}|chans={input_size[0]}|img={img_size}")


def _with_sizes(entries: list[dict], sizes: dict, bar, on_problem) -> Iterator[dict]:
    for entry in entries:
        if "error" in sizes:
            on_problem(entry["name"], f"meta-device build failed, sizes unknown: "
                                      f"{sizes['error']}", False)
        else:
            entry = {**entry, "feature_dim": sizes["feature_dim"],
                     "param_count": sizes["param_count"]}
        bar.update()
        yield entry


class _SkipValueInit(TorchFunctionMode):
    """Skip in-place ops that only set values (weight init) on meta tensors.

    On the meta device they compute nothing, yet each still costs a trip through torch's
    Python dispatch; skipping them makes a build about 40% faster. Shapes are untouched:
    only ops that keep their tensor's shape are listed.
    """

    VALUE_ONLY = frozenset({
        "normal_", "uniform_", "zero_", "fill_", "clamp_", "clamp_min_", "clamp_max_",
        "mul_", "add_", "sub_", "div_", "erfinv_", "copy_", "exponential_", "bernoulli_",
        "random_", "fill_diagonal_", "log_normal_",
        # torch.nn.init's initialisers, which dispatch as a whole
        "trunc_normal_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_",
        "xavier_normal_", "orthogonal_", "constant_", "ones_", "zeros_", "eye_", "dirac_", "sparse_",
    })

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if (args and getattr(func, "__name__", None) in self.VALUE_ONLY
                and isinstance(args[0], torch.Tensor) and args[0].is_meta):
            return args[0]
        return func(*args, **(kwargs or {}))


def measure(model_name: str) -> dict:
    """Feature width and parameter count of a model, built on the meta device (no memory)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.device("meta"), _SkipValueInit():
                model = timm.create_model(model_name, pretrained=False)
        return {"feature_dim": feature_dim_of(model),
                "param_count": int(sum(p.numel() for p in model.parameters()))}
    except Exception as exc:  # any model may fail on meta: it costs its sizes, nothing else
        return {"error": _oneline(exc)}


def _measure_all(builds: dict[str, str], jobs: int | None) -> Iterator[tuple[str, dict]]:
    if jobs is None:
        jobs = min(_cpu_count(), len(builds) // _MIN_BUILDS_PER_PROCESS)
    if jobs <= 1:
        for key, model_name in builds.items():
            yield key, measure(model_name)
        return
    # spawn, not fork: the parent holds database connections and torch's thread pools.
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"),
                             initializer=_quiet_worker) as pool:
        futures = {pool.submit(measure, model_name): key for key, model_name in builds.items()}
        for future in as_completed(futures):
            try:
                sizes = future.result()
            except Exception as exc:  # the worker process died (e.g. out of memory)
                sizes = {"error": f"measuring process failed: {_oneline(exc)}"}
            yield futures[future], sizes


def _quiet_worker() -> None:
    torch.set_num_threads(1)
    logging.disable(logging.WARNING)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _read_sizes(path: Path | None) -> dict:
    if path is None or not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # a damaged cache only costs a re-measure
        return {}


def _write_sizes(path: Path | None, sizes: dict) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(sizes, sort_keys=True))
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not save the timm sizes cache %s: %s", path, exc)


def _existing_rows(model, names: list[str], chunk: int = 500) -> dict:
    rows = {}
    for i in range(0, len(names), chunk):  # stay under the database's parameter limit
        for row in model.objects.filter(name__in=names[i:i + chunk]):
            rows[row.name] = row
    return rows


@cache
def _module_by_architecture() -> dict[str, str]:
    return {arch: module for module in timm.list_modules()
            for arch in timm.list_models(module=module)}


def _oneline(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}".rstrip(": ")

