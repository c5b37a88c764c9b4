"""Output folders that never destroy what a user had: every command that writes a folder goes through
:class:`OutputFolder`.

The rules (docs/architecture.md#output-folders):

- Everything is written into a temporary folder beside the target (``.NAME.tmp-XXXX``), created before any
  computation: that is the writability check. Free space is checked at the same time.
- A missing or empty target is simply replaced by the finished temporary folder (``os.replace``).
- An existing target is replaced only when its marker file (:data:`MARKER`), written by the same command,
  lists every file the folder holds: it is an earlier output of ours and nothing else. The earlier folder is
  moved aside, the new one moved in, then the earlier one removed.
- Otherwise the command refuses, before computing, naming the folder, unless ``overwrite``: then the new files
  are moved into the existing folder one by one, the earlier outputs the marker lists are removed, and every
  other file is kept. A file of ours that would replace a file the marker does not list is refused even then:
  nothing the command did not write is ever deleted or replaced.
- On any error or Ctrl-C the temporary folder is removed and the target is left as it was.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterable
from pathlib import Path

from .core.errors import IEAdaptError

MARKER = ".ieadapt-output.json"
MIB = 1 << 20


class OutputError(IEAdaptError):
    """An output folder that cannot be written, or that holds files the command did not write."""


def _files(folder: Path) -> set[str]:
    """Every file under ``folder`` as a '/'-separated relative path, the marker left out."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir()} - {MARKER}


def read_marker(folder: Path) -> dict | None:
    """The marker of ``folder`` ({"command": ..., "files": [...]}), or None when it has none or it is unreadable."""
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    ok = isinstance(marker, dict) and isinstance(marker.get("command"), str) and isinstance(marker.get("files"), list)
    return marker if ok else None


class OutputFolder:
    """A target folder that a command fills through a temporary folder (module docstring).

    Construct it before computing (it checks the target and raises :class:`OutputError`), call :meth:`open`
    (it creates the temporary folder and checks free space), write into :attr:`tmp`, then :meth:`commit`; on
    failure :meth:`discard`. As a context manager: ``with OutputFolder(...) as tmp:`` commits on success and
    discards on any exception, KeyboardInterrupt included.
    """

    def __init__(self, target: str | os.PathLike, command: str, *, overwrite: bool = False,
                 outputs: Iterable[str] = (), option: str = "--out"):
        """Check ``target`` for ``command`` (e.g. "edit"); ``outputs`` are the top-level names the command will
        write, when known, so that a clash with a user's file is refused before computing."""
        self.target = Path(target).expanduser()
        self.command = command
        self.overwrite = overwrite
        self.option = option
        self.tmp: Path | None = None
        self._ours: set[str] = set()
        parent = self.target.absolute().parent
        if self.target.exists() and not self.target.is_dir():
            raise OutputError(f"{option} {self.target} is a file; name a folder")
        if not parent.is_dir():
            raise OutputError(f"{option} {self.target}: its parent folder {parent} does not exist")
        if self.target.is_dir():
            self._check_existing(set(outputs))

    def _check_existing(self, outputs: set[str]) -> None:
        existing = _files(self.target)
        marker = read_marker(self.target)
        if marker is not None and marker["command"] == self.command:
            self._ours = {str(f) for f in marker["files"]}
        foreign = sorted(existing - self._ours)
        empty = not any(self.target.iterdir())
        if empty or not foreign:
            return
        if not self.overwrite:
            whose = (f"an earlier {self.command} output, but it also holds files the command did not write"
                     if self._ours else f"not an earlier {self.command}'s output")
            raise OutputError(f"{self.option} {self.target} is {whose} ({', '.join(foreign[:5])}"
                              f"{', ...' if len(foreign) > 5 else ''}); name a new or empty folder, or pass "
                              "--overwrite to add the outputs to it (files the command did not write are kept)")
        self._refuse_clashes({name for name in outputs})

    def _refuse_clashes(self, names: set[str]) -> None:
        """Refuse outputs that would replace a file or folder the marker does not list."""
        clash = sorted(n for n in names if (self.target / n).exists() and not self._is_ours(n))
        if clash:
            raise OutputError(f"{self.option} {self.target}: {', '.join(clash)} would replace files the {self.command} "
                              "command did not write; move them away or name another folder (--overwrite never "
                              "replaces them)")

    def _is_ours(self, name: str) -> bool:
        path = self.target / name
        if path.is_dir():
            return _files(path) <= {f[len(name) + 1:] for f in self._ours if f.startswith(name + "/")}
        return name in self._ours

    def open(self, need_bytes: int = 0) -> Path:
        """Create the temporary folder beside the target and check that ``need_bytes`` (plus 1 MiB) are free."""
        parent = self.target.absolute().parent
        tmp = parent / f".{self.target.name}.tmp-{secrets.token_hex(4)}"
        try:
            os.mkdir(tmp)
        except OSError as e:
            raise OutputError(f"{self.option} {self.target}: cannot write in {parent} ({e.strerror or e})") from None
        self.tmp = tmp
        free = shutil.disk_usage(parent).free
        if free < need_bytes + MIB:
            self.discard()
            raise OutputError(f"{self.option} {self.target}: {free / MIB:.1f} MiB free in {parent}, the outputs need "
                              f"about {(need_bytes + MIB) / MIB:.1f} MiB; free some space or choose another folder")
        return tmp

    def discard(self) -> None:
        """Remove the temporary folder (the target is untouched)."""
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def commit(self) -> Path:
        """Write the marker and move the temporary folder's contents into place; returns the target."""
        assert self.tmp is not None, "commit() before open()"
        files = sorted(_files(self.tmp))
        (self.tmp / MARKER).write_text(json.dumps({"command": self.command, "files": files}, indent=1) + "\n")
        if not self.target.exists() or not any(self.target.iterdir()):
            os.replace(self.tmp, self.target)
        elif not (_files(self.target) - self._ours):
            old = self.target.absolute().parent / f".{self.target.name}.old-{secrets.token_hex(4)}"
            os.replace(self.target, old)
            os.replace(self.tmp, self.target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            self._merge(files)
        self.tmp = None
        return self.target

    def _merge(self, files: list[str]) -> None:
        """``overwrite`` into a folder that holds foreign files: ours replace ours, theirs are kept."""
        self._refuse_clashes({f.split("/")[0] for f in files})
        for name in sorted(self._ours - set(files)):
            (self.target / name).unlink(missing_ok=True)
        for name in files + [MARKER]:
            destination = self.target / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.tmp / name, destination)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> Path:
        return self.tmp if self.tmp is not None else self.open()

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()
