"""``manage.py import_claims FILE [--affiliate ID] [--dry-run]``: a bulk import from a file on disk.

The same import as ``POST /api/v1/submissions/bulk`` (services/bulk.py), run by an operator: rows may
name their affiliate in an ``affiliate_id`` column (as a staff key's may), and the size and row limits
of the API do not apply. A progress bar goes to stderr when it is a terminal; the summary and each
refused row (line number, field, message) go to stdout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from tqdm import tqdm

from reconciliation.models import Affiliate
from reconciliation.services import bulk


class Command(BaseCommand):
    help = "Import claims from a CSV or JSON-lines file (see README, Bulk import)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--affiliate", help="Affiliate id or email (else each row's affiliate_id column).")
        parser.add_argument("--dry-run", action="store_true", help="Check every row and report; write nothing.")
        parser.add_argument(
            "--format", choices=("csv", "jsonl"), help="Default: from the file name (.csv, .jsonl, .ndjson)."
        )

    def handle(
        self, *args: Any, file: Path, affiliate: str | None, dry_run: bool, format: str | None, **options: Any
    ) -> None:
        fmt = format or bulk.format_of(filename=file.name)
        if fmt is None:
            raise CommandError(f"{file.name}: cannot tell the format from the name; pass --format csv or jsonl")
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise CommandError(f"{file}: {exc.strerror}") from None
        owner = self._affiliate(affiliate) if affiliate else None
        bar = tqdm(
            unit="row", file=self.stderr._out, disable=not self.stderr.isatty(), desc="Importing", dynamic_ncols=True
        )

        def parsed(rows: int) -> None:
            bar.total = rows
            bar.refresh()

        try:
            result = bulk.claims_import(
                data=data,
                fmt=fmt,  # type: ignore[arg-type]
                affiliate=owner,
                staff=True,
                now=timezone.now(),
                dry_run=dry_run,
                progress=bar.update,
                on_parsed=parsed,
            )
        except bulk.BulkFileError as exc:
            raise CommandError(f"{file.name}: {exc}") from None
        finally:
            bar.close()
        for rejected in result.rejected:
            for field, messages in rejected.fields.items():
                self.stdout.write(f"line {rejected.line}: {field}: {' '.join(messages)}")
        verb = "would be created (dry run, nothing written)" if dry_run else "created"
        sent = "sent to reconciliation" if result.dispatched else "queued for the sweeper"
        summary = (
            f"{result.rows} rows: {result.created} claims {verb}, {result.already_imported} already imported, "
            f"{len(result.rejected)} rejected"
        )
        if result.created and not dry_run:
            summary += f"; {sent}"
        style = self.style.SUCCESS if not result.rejected else self.style.WARNING
        self.stdout.write(style(summary + "."))

    def _affiliate(self, value: str) -> Affiliate:
        lookup = {"email__iexact": value} if "@" in value else {"pk": int(value)} if value.isdigit() else None
        found = Affiliate.objects.filter(**lookup).first() if lookup else None
        if found is None:
            raise CommandError(f"no affiliate {value!r} (give its id or email)")
        if not found.is_active:
            raise CommandError(f"affiliate {found.pk} is not active")
        return found
