"""Staging clean-up: which run folders under the staging root may go, and removing them. No Dagster.

A run stages into ``{staging}/{table}/{partition}/{root_run_id}`` (see ``staging_path``) and its
MERGE step removes the folder once merged. A run that is blocked by a gate, fails, is canceled or
dies (kill -9, a lost machine) leaves its folder behind. A folder may go when the run lineage
that owns it (the root run and every re-execution of it) has ended, and has ended at least a
grace period ago: a re-execution from failure reuses the root run's folder, so the grace is the
time a person has to re-execute a failed run from failure without staging again. A folder whose
lineage is still live (queued, starting, started, canceling) is never touched, whatever its age:
a run killed without run monitoring stays STARTED and keeps its folder until Dagster marks it
failed. A folder whose run the instance does not know (another instance, a wiped history) goes
once nothing in it changed for the grace period.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StagingFolder:
    """One run's staging folder: ``{root}/{table}/{partition}/{root_run_id}``."""

    path: Path
    table: str
    partition: str
    root_run_id: str
    modified: float
    """Newest modification time of the folder or anything in it (epoch seconds)."""


@dataclass(frozen=True)
class Lineage:
    """What the instance says about the runs of one root run id."""

    live: bool
    """Some run of the lineage has not ended (queued, starting, started, canceling)."""
    ended_at: float | None
    """When its last run ended (epoch seconds); None when unknown."""
    statuses: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    folder: StagingFolder
    remove: bool
    reason: str


def _newest_mtime(path: Path) -> float:
    newest = path.stat().st_mtime
    for child in path.rglob("*"):
        try:
            newest = max(newest, child.stat().st_mtime)
        except FileNotFoundError:  # removed while we looked
            continue
    return newest


def list_staging_folders(root: Path) -> list[StagingFolder]:
    """Every run folder three levels below ``root`` (missing root: none)."""
    folders: list[StagingFolder] = []
    if not root.is_dir():
        return folders
    for table in sorted(p for p in root.iterdir() if p.is_dir()):
        for partition in sorted(p for p in table.iterdir() if p.is_dir()):
            for run in sorted(p for p in partition.iterdir() if p.is_dir()):
                try:
                    modified = _newest_mtime(run)
                except FileNotFoundError:
                    continue
                folders.append(StagingFolder(run, table.name, partition.name, run.name, modified))
    return folders


def decide(
    folders: Sequence[StagingFolder],
    lineages: Mapping[str, Lineage | None],
    *,
    now: float,
    grace_seconds: float,
) -> list[Decision]:
    """Remove or keep each folder, with the reason (``lineages``: root run id -> lineage, None
    or absent when the instance does not know the run)."""
    out: list[Decision] = []
    for folder in folders:
        lineage = lineages.get(folder.root_run_id)
        if lineage is None:
            age = now - folder.modified
            if age >= grace_seconds:
                out.append(Decision(folder, True, f"run unknown to the instance, idle {age:.0f} s"))
            else:
                out.append(Decision(folder, False, "run unknown to the instance, recently used"))
            continue
        if lineage.live:
            out.append(
                Decision(folder, False, "run lineage is live: " + ", ".join(lineage.statuses))
            )
            continue
        ended = max(lineage.ended_at or 0.0, folder.modified)
        age = now - ended
        statuses = ", ".join(lineage.statuses)
        if age >= grace_seconds:
            out.append(Decision(folder, True, f"run lineage ended ({statuses}) {age:.0f} s ago"))
        else:
            out.append(
                Decision(
                    folder,
                    False,
                    f"run lineage ended ({statuses}) {age:.0f} s ago, within the grace period of "
                    f"{grace_seconds:.0f} s (a re-execution from failure would reuse it)",
                )
            )
    return out


def remove_folder(folder: StagingFolder) -> None:
    """Remove a run folder, then its partition folder when that is left empty."""
    shutil.rmtree(folder.path)
    with contextlib.suppress(OSError):  # only when empty; a new run's folder keeps it
        folder.path.parent.rmdir()
