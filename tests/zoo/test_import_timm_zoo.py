"""import_timm_zoo: the zoo from timm's registry, offline, idempotent, curated rows left alone."""

from io import StringIO

import pytest
import timm
from django.core.management import CommandError, call_command
from timm.models import get_pretrained_cfg

from zoo import timm_catalog
from zoo.models import Checkpoint
from zoo.timm_catalog import catalog_entries, import_catalog, source_dataset_of

pytestmark = pytest.mark.django_db

PATTERN = "resnet18*"  # 11 tags, two networks: quick to measure


@pytest.fixture(autouse=True)
def own_sizes_cache(settings, tmp_path):
    # Each test measures for itself unless it says otherwise.
    settings.ZOORANK_CACHE_DIR = tmp_path / "cache"


def run(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("import_timm_zoo", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def stamps() -> dict[str, object]:
    return dict(Checkpoint.objects.values_list("name", "updated_at"))


def test_it_imports_each_pretrained_tag_with_timms_config():
    out, err = run("--pattern", PATTERN)

    tags = timm.list_pretrained(PATTERN)
    assert len(tags) > 5
    assert sorted(Checkpoint.objects.values_list("name", flat=True)) == sorted(tags)
    assert out.startswith(f"created {len(tags)}, updated 0, unchanged 0, curated skipped 0, "
                          f"failed 0 (")
    assert "timm zoo" in err and "100%" in err  # the progress bar, shown by default

    cfg = get_pretrained_cfg("resnet18.a1_in1k")
    row = Checkpoint.objects.get(name="resnet18.a1_in1k")
    assert row.architecture == "resnet18" == cfg.architecture
    assert row.pretrained_tag == "a1_in1k" == cfg.tag
    assert row.family == "resnet"
    assert row.weights_source == Checkpoint.WeightsSource.HUB
    assert row.hub_id == cfg.hf_hub_id == "timm/resnet18.a1_in1k"
    assert row.input_size == list(cfg.input_size)
    assert row.interpolation == cfg.interpolation
    assert row.crop_pct == cfg.crop_pct
    assert row.crop_mode == cfg.crop_mode
    assert row.mean == list(cfg.mean) and row.std == list(cfg.std)
    assert row.num_classes == cfg.num_classes == 1000
    assert row.license == cfg.license
    assert row.source_dataset == "ImageNet-1k"
    assert row.source_top1 is None  # timm's wheel ships no results table
    assert not row.curated
    assert not row.enabled  # imported rows wait for an admin to enable them

    real = timm.create_model("resnet18", pretrained=False)
    assert row.param_count == sum(p.numel() for p in real.parameters()) == 11_689_512
    assert row.feature_dim == real.num_features == 512

    swsl = Checkpoint.objects.get(name="resnet18.fb_swsl_ig1b_ft_in1k")
    assert swsl.source_dataset == "Instagram-1B → ImageNet-1k"


def test_a_second_run_changes_nothing():
    run("--pattern", PATTERN, "--no-progress")
    before = stamps()

    out, _ = run("--pattern", PATTERN, "--no-progress")

    assert out.startswith(f"created 0, updated 0, unchanged {len(before)}, curated skipped 0, "
                          f"failed 0 (")
    assert stamps() == before


def test_it_updates_only_the_rows_that_changed():
    run("--pattern", PATTERN, "--no-progress")
    Checkpoint.objects.filter(name="resnet18.tv_in1k").update(crop_pct=0.5, family="stale")
    before = stamps()

    out, _ = run("--pattern", PATTERN, "--no-progress")

    assert out.startswith(f"created 0, updated 1, unchanged {len(before) - 1},")
    row = Checkpoint.objects.get(name="resnet18.tv_in1k")
    assert (row.crop_pct, row.family) == (get_pretrained_cfg("resnet18.tv_in1k").crop_pct,
                                          "resnet")
    after = stamps()
    assert after.pop("resnet18.tv_in1k") > before.pop("resnet18.tv_in1k")
    assert after == before


def test_it_leaves_curated_rows_untouched():
    curated = Checkpoint.objects.create(
        name="resnet18.a1_in1k", architecture="resnet18", family="my resnets",
        weights_source=Checkpoint.WeightsSource.LOCAL, weights_path="/weights/r18.safetensors",
        input_size=[3, 160, 160], crop_pct=1.0, mean=[0.5] * 3, std=[0.25] * 3,
        num_classes=10, source_dataset="my photos", curated=True,
    )
    before = Checkpoint.objects.filter(pk=curated.pk).values().get()

    out, _ = run("--pattern", PATTERN, "--no-progress")

    assert "curated skipped 1," in out
    assert Checkpoint.objects.filter(pk=curated.pk).values().get() == before


def test_limit_keeps_the_first_tags_in_timms_order():
    out, _ = run("--pattern", "resnet1*", "--limit", "3", "--no-progress")

    assert out.startswith("created 3, updated 0, unchanged 0,")
    assert (sorted(Checkpoint.objects.values_list("name", flat=True))
            == sorted(timm.list_pretrained("resnet1*")[:3]))


def test_it_refuses_a_limit_below_one():
    with pytest.raises(CommandError, match="--limit"):
        run("--limit", "0")


def test_a_failing_model_never_stops_the_import(monkeypatch):
    create_model = timm.create_model

    def fragile_create_model(name, *args, **kwargs):
        if name.startswith("resnet18d"):
            raise RuntimeError("cannot be built on meta")
        return create_model(name, *args, **kwargs)

    def fragile_cfg(name):
        if name == "resnet18.gluon_in1k":
            raise KeyError("broken registry entry")
        return get_pretrained_cfg(name)

    monkeypatch.setattr(timm, "create_model", fragile_create_model)
    monkeypatch.setattr(timm_catalog, "get_pretrained_cfg", fragile_cfg)

    out, err = run("--pattern", PATTERN, "--no-progress", "--jobs", "1")

    resnet18d = timm.list_pretrained("resnet18d*")
    assert out.startswith(f"created {len(timm.list_pretrained(PATTERN)) - 1}, updated 0, "
                          f"unchanged 0, curated skipped 0, failed 1, "
                          f"sizes unknown {len(resnet18d)} (")
    assert "warning: resnet18.gluon_in1k: cannot read its pretrained config" in err
    assert "warning: resnet18d.ra2_in1k: meta-device build failed" in err
    assert not Checkpoint.objects.filter(name="resnet18.gluon_in1k").exists()
    for row in Checkpoint.objects.filter(name__in=resnet18d):  # imported, without sizes
        assert (row.param_count, row.feature_dim) == (None, None)
        assert row.hub_id == f"timm/{row.name}"
    assert Checkpoint.objects.get(name="resnet18.a1_in1k").param_count == 11_689_512


def test_sizes_are_remembered_between_runs(monkeypatch):
    run("--pattern", PATTERN, "--no-progress")
    Checkpoint.objects.all().delete()

    def no_builds(*args, **kwargs):
        raise AssertionError("a cached size was measured again")

    monkeypatch.setattr(timm, "create_model", no_builds)
    out, _ = run("--pattern", PATTERN, "--no-progress", "--jobs", "1")

    assert "sizes unknown" not in out
    assert Checkpoint.objects.get(name="resnet18.a1_in1k").param_count == 11_689_512


def test_measuring_processes_agree_with_measuring_in_process():
    serial = {e["name"]: (e["feature_dim"], e["param_count"])
              for e in catalog_entries("resnet1?t.*", jobs=1)}
    pooled = {e["name"]: (e["feature_dim"], e["param_count"])
              for e in catalog_entries("resnet1?t.*", jobs=2)}

    assert len(serial) == 2 and None not in serial.values()
    assert pooled == serial


def test_the_whole_registry_imports_and_reimports_unchanged():
    entries = list(catalog_entries(measure_sizes=False))
    assert len(entries) > 1500
    assert len({e["name"] for e in entries}) == len(entries)
    assert all(e["name"] == f"{e['architecture']}.{e['pretrained_tag']}" for e in entries)
    assert all(len(e["input_size"]) == 3 and e["family"] for e in entries)

    first = import_catalog(measure_sizes=False)
    second = import_catalog(measure_sizes=False)

    assert first.created == len(entries) == Checkpoint.objects.count()
    assert (second.created, second.updated, second.unchanged) == (0, 0, len(entries))


def test_an_import_without_sizes_keeps_the_sizes_already_known():
    run("--pattern", PATTERN, "--no-progress")

    summary = import_catalog(PATTERN, measure_sizes=False)

    assert summary.updated == 0
    assert Checkpoint.objects.get(name="resnet18.a1_in1k").param_count == 11_689_512


@pytest.mark.parametrize("tag, num_classes, expected", [
    ("augreg_in21k_ft_in1k", 1000, "ImageNet-21k → ImageNet-1k"),
    ("laion2b_ft_in12k_in1k", 1000, "LAION-2B → ImageNet-12k → ImageNet-1k"),
    ("metaclip_2pt5b", 1024, "MetaCLIP-2.5B"),
    ("in21k", 21843, "ImageNet-21k"),
    ("ra2_in1k", 1000, "ImageNet-1k"),
    ("fb", 1000, "ImageNet-1k"),  # no dataset in the tag: the head's size tells
    ("fb", 0, ""),
])
def test_source_dataset_comes_from_the_tag(tag, num_classes, expected):
    assert source_dataset_of(tag, num_classes) == expected


def test_enable_turns_on_new_rows_only_and_re_runs_keep_what_the_admin_chose():
    run("--pattern", PATTERN, "--no-sizes", "--limit", "3")
    first = set(Checkpoint.objects.values_list("name", flat=True))
    Checkpoint.objects.filter(name=sorted(first)[0]).update(enabled=True)

    run("--pattern", PATTERN, "--no-sizes", "--enable")

    enabled = set(Checkpoint.objects.filter(enabled=True).values_list("name", flat=True))
    assert enabled == (set(timm.list_pretrained(PATTERN)) - first) | {sorted(first)[0]}
