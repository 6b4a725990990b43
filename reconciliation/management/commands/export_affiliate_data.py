"""``manage.py export_affiliate_data <affiliate> [--output PATH]``: the compliance archive of one affiliate.

The archive is written next to its destination under a temporary name (mode 0600, it holds personal
data) and renamed once complete, so an interrupted export never leaves a truncated ZIP behind.
"""

from __future__ import annotations

import getpass
import os
import tempfile
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from reconciliation.models import Affiliate
from reconciliation.services.exports import affiliate_export

#: The largest primary key PostgreSQL's bigint holds.
MAX_ID = 2**63 - 1


def find_affiliate(ref: str) -> Affiliate:
    """An affiliate by id, e-mail (case-insensitive, unique) or exact name (if only one has it)."""
    ref = ref.strip()
    if ref.isdigit() and int(ref) <= MAX_ID:  # past bigint no row can match (and the query would overflow)
        found = Affiliate.objects.filter(pk=int(ref)).first()
        if found is not None:
            return found
    by_email = Affiliate.objects.filter(email__iexact=ref).first()
    if by_email is not None:
        return by_email
    by_name = list(Affiliate.objects.filter(name=ref)[:2])
    if len(by_name) == 1:
        return by_name[0]
    if by_name:
        raise CommandError(f"More than one affiliate is named {ref!r}: give the id or the e-mail instead.")
    raise CommandError(f"No affiliate with id, e-mail or name {ref!r}.")


class Command(BaseCommand):
    help = "Export everything held about one affiliate (ZIP of CSV + JSON with a checksummed manifest)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("affiliate", help="The affiliate's id, e-mail or exact name.")
        parser.add_argument(
            "--output", default=None, help="Where to write the ZIP (default ./affiliate-<id>-<timestamp>.zip)."
        )

    def handle(self, *args: Any, affiliate: str, output: str | None, **options: Any) -> None:
        found = find_affiliate(affiliate)
        now = timezone.now()
        path = Path(output or f"affiliate-{found.pk}-{now:%Y%m%dT%H%M%SZ}.zip")
        if path.exists():
            raise CommandError(f"{path} already exists; choose another --output.")
        if not path.parent.is_dir():
            raise CommandError(f"Directory {path.parent} does not exist.")
        self.stderr.write(f"Exporting affiliate {found.pk} ({found}) to {path}")

        def progress(table: str, rows: int) -> None:
            self.stderr.write(f"  {table}: {rows} rows")

        fd, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                result = affiliate_export(
                    affiliate=found, out=out, now=now, actor=f"manage.py ({_os_user()})", progress=progress
                )
            os.replace(partial, path)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
        rows = sum(result.counts.values())
        self.stderr.write(f"Wrote {path} ({path.stat().st_size} bytes, {rows} rows in {len(result.counts)} tables)")
        self.stdout.write(str(path))


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        return "unknown"
