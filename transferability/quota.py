"""Each user's storage quota over their uploads and datasets: ``ZOORANK_USER_QUOTA_GB``.

What counts: every dataset's unpacked folder in the store (``stored_bytes``) and every
upload still kept while it waits to be ingested (``archive_bytes`` of a row with an
``upload_name``). It is checked twice: before an upload is stored (its size) and while an
archive is unpacked (what its entries declare, :mod:`transferability.archives`), so neither a
large upload nor a small archive that expands can go over it. The unpacked dataset replaces
its upload, so an ingest is measured against what the user's other datasets and uploads take.
"""

from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q, Sum

from .archives import ArchiveError, readable
from .models import TargetDataset


@dataclass(frozen=True)
class StorageUse:
    used: int
    quota: int

    @property
    def left(self) -> int:
        return max(self.quota - self.used, 0)

    @property
    def share(self) -> float:
        return self.used / self.quota if self.quota else 1.0

    def __str__(self) -> str:
        """"1.2 GiB of 20 GiB in use"."""
        return f"{readable(self.used)} of {readable(self.quota)} in use"


def quota_bytes() -> int:
    return int(settings.ZOORANK_USER_QUOTA_GB * 2**30)


def storage_use(owner, leave_out: TargetDataset | None = None) -> StorageUse:
    """What ``owner``'s datasets and waiting uploads take (``leave_out``: one row not counted,
    the one being ingested)."""
    rows = TargetDataset.objects.filter(owner=owner)
    if leave_out is not None:
        rows = rows.exclude(pk=leave_out.pk)
    totals = rows.aggregate(stored=Sum("stored_bytes"),
                            waiting=Sum("archive_bytes", filter=~Q(upload_name="")))
    return StorageUse(used=(totals["stored"] or 0) + (totals["waiting"] or 0),
                      quota=quota_bytes())


def check_upload(owner, size: int) -> None:
    """Refuse an upload of ``size`` bytes that would take ``owner`` over the quota, before it
    is stored."""
    use = storage_use(owner)
    if use.used + size > use.quota:
        raise ArchiveError(f"this archive ({readable(size)}) would go over your storage quota: "
                           f"{use}; delete datasets you no longer need to make room")
