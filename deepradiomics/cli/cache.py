"""``deepradiomics cache list|prune DIR``: the entries of a result cache (batch --out-dir, --cache-dir) by params hash."""

from __future__ import annotations

import click

from .common import report_errors, setup_logging, verbosity_options


def _entries(folder: str):
    from pathlib import Path

    from ..batch.cache import entries
    from ..errors import ParamsError

    path = Path(folder)
    if not path.is_dir():
        raise ParamsError(f"cache folder '{folder}' does not exist or is not a folder: give the --out-dir or --cache-dir of a run")
    return entries(path)


def _size(count: int) -> str:
    """A byte count for people (1024-based units)."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _age(days: float) -> str:
    """An age for people: minutes, hours or days."""
    if days < 1 / 24:
        return f"{max(0.0, days * 1440):.0f} min"
    if days < 1:
        return f"{days * 24:.1f} h"
    return f"{days:.1f} d"


def _legacy_note(folder: str) -> str | None:
    """A note on rows stored by earlier versions directly in ``cases/`` (never reused: their layout has no namespace)."""
    from pathlib import Path

    count = sum(1 for kind in ("cases", "failed") for _ in (Path(folder) / kind).glob("*.json"))
    if not count:
        return None
    return f"{count} row(s) under {Path(folder) / 'cases'} and {Path(folder) / 'failed'} are in the layout of earlier versions and are never reused: remove those folders"


@click.group("cache")
def command():
    """List the entries of a result cache (a batch --out-dir, the --cache-dir of fit, study or robustness) or prune them.

    Each entry holds the results of one params set (its hash covers every model and artifact sha256, the
    code versions and the layout), so runs with different params share a folder. Examples:

    \b
      deepradiomics cache list cache/
      deepradiomics cache prune cache/ --older-than 30
      deepradiomics cache prune cache/ --params 3fa2c1e9
    """


@command.command("list")
@click.argument("folder", type=click.Path(file_okay=False))
@verbosity_options
@report_errors
def list_entries(folder, verbose, quiet):
    """One line per entry of FOLDER: entry, kind, params hash, cases (and failed ones), size, last use, source params file."""
    import time

    setup_logging(verbose, quiet)
    found = _entries(folder)
    note = _legacy_note(folder)
    if note:
        click.echo(f"Note: {note}", err=True)
    if not found:
        click.echo(f"no cache entry under {folder}", err=True)
        return
    now = time.time()
    header = f"{'entry':<16}  {'kind':<6}  {'params hash':<12}  {'cases':>6}  {'failed':>6}  {'size':>10}  {'last used':>9}  source"
    click.echo(header)
    for entry in found:
        relative = entry.folder.relative_to(folder).parent
        where = "" if str(relative) == "." else f" ({relative})"
        click.echo(
            f"{entry.id:<16}  {entry.kind:<6}  {entry.params_hash[:12]:<12}  {entry.cases:>6}  {entry.failed:>6}  {_size(entry.bytes):>10}  "
            f"{_age(entry.age_days(now)):>9}  {entry.source or '-'}{where}"
        )


@command.command("prune")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--older-than", "older_than", type=click.FloatRange(min=0), default=None, metavar="DAYS", help="Remove entries last used more than DAYS days ago.")
@click.option("--params", "hashes", multiple=True, metavar="HASH", help="Remove the entries whose params hash or entry name starts with HASH (at least 6 digits; repeatable).")
@click.option("--dry-run", is_flag=True, help="Say what would be removed, remove nothing.")
@verbosity_options
@report_errors
def prune(folder, older_than, hashes, dry_run, verbose, quiet):
    """Remove entries of FOLDER last used more than --older-than DAYS ago and/or those of --params HASH."""
    import shutil
    import time

    from ..errors import ParamsError

    setup_logging(verbose, quiet)
    if older_than is None and not hashes:
        raise ParamsError("give --older-than DAYS and/or --params HASH: prune removes nothing by default (see `deepradiomics cache list`)")
    short = [h for h in hashes if len(h.strip()) < 6]
    if short:
        raise ParamsError(f"--params '{short[0]}' is too short to name one entry: give at least 6 digits of the hash `deepradiomics cache list` shows")
    now = time.time()
    chosen = [
        e
        for e in _entries(folder)
        if (older_than is None or e.age_days(now) > older_than) and (not hashes or any(e.id.startswith(h) or e.params_hash.startswith(h) for h in hashes))
    ]
    for entry in chosen:
        click.echo(f"{'would remove' if dry_run else 'removed'} {entry.folder} ({entry.cases} cases, {_size(entry.bytes)}, last used {_age(entry.age_days(now))} ago)", err=True)
        if not dry_run:
            shutil.rmtree(entry.folder)
    total = sum(e.bytes for e in chosen)
    click.echo(f"{len(chosen)} entr{'y' if len(chosen) == 1 else 'ies'} {'would be ' if dry_run else ''}removed ({_size(total)})", err=True)
