"""A run folder while a command writes into it: one process at a time (a lock file held with flock,
which the kernel frees however the process ends, SIGKILL included), no stale temporary files of
writes that a kill cut short, and no folder left behind by a command that wrote nothing of its own.
Also the one line that a failed write (full disk, read-only folder, a file in the way) becomes."""

import errno
import fcntl
import os
import shutil
from pathlib import Path

from .checkpoint import clean_stale_temps
from .errors import ExptError

LOCK_NAME = ".expt.lock"
OURS = {"config.yaml", ".hydra", "expt.log", LOCK_NAME}  # what exists before a command writes results


class FolderBusy(ExptError):
    """Another expt process is writing into the run folder."""


def holds_results(folder: Path) -> bool:
    """Whether the folder holds anything beyond what Hydra and expt write before a command runs."""
    return Path(folder).is_dir() and any(p.name not in OURS for p in Path(folder).iterdir())


def lock_holder(folder: Path) -> str | None:
    """The pid written in the folder's lock file while another process holds it, else None."""
    lock = Path(folder) / LOCK_NAME
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        return os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
    finally:
        os.close(fd)


def busy_error(folder: Path, holder: str) -> FolderBusy:
    return FolderBusy(f"{folder} is in use by another expt process (pid {holder}); wait for it to finish, "
                      "or pass another hydra.run.dir")


class NotWritable(ExptError):
    """The run folder cannot be written (a read-only disk, no permission)."""

    exit_code = 1  # a failing disk, as a full one


def check_free(folder: Path, train: bool) -> None:
    """Before Hydra writes into the run folder: refuse one that cannot be written, one that another
    process holds, and, for training, one that holds a run already (nothing is overwritten)."""
    folder = Path(folder)
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        code = errno.EROFS if os.statvfs(existing).f_flag & os.ST_RDONLY else errno.EACCES
        raise NotWritable(os_error_line(OSError(code, os.strerror(code), str(folder))))
    holder = lock_holder(folder)
    if holder is not None:
        raise busy_error(folder, holder)
    if train and any((folder / name).exists() for name in ("summary.json", "last.pt", "model.safetensors")):
        raise ExptError(f"{folder} already holds a run; pass another hydra.run.dir, or resume={folder} to "
                        "continue it into a new folder")


def not_there_yet(path: str) -> list[Path]:
    """The folders of `path` (a run folder's path as given, before Hydra makes it) that do not exist
    yet, deepest first: what the command will have created. A last component that is still an
    unresolved ${...} (the default run folder's name) counts as new, and is resolved by the caller;
    a path whose folders above it are unresolved gives nothing."""
    folder = Path(os.path.abspath(path))
    if "${" in str(folder.parent):
        return []
    made = [] if "${" not in folder.name and folder.exists() else [folder]
    for parent in folder.parents:
        if parent.exists():
            break
        made.append(parent)
    return made


def remove_if_unused(folder: Path, made: list[Path] | None = None) -> None:
    """After a command that wrote no result into `folder` (nothing but config.yaml, .hydra, the lock,
    an empty expt.log): take away what the command made. `made` lists the folders the command
    created (not_there_yet; None: the folder alone): the run folder goes whole if it is one of them,
    else only the entries expt and Hydra wrote into it; then each of the others left empty. A
    folder that existed before the command (the user's, a mount point) is never removed."""
    folder = Path(os.path.abspath(folder))
    made = [folder] if made is None else [Path(os.path.abspath(p)) for p in made]
    log = folder / "expt.log"
    if not folder.is_dir() or holds_results(folder) or (log.is_file() and log.stat().st_size):
        return
    if folder in made:
        shutil.rmtree(folder, ignore_errors=True)
    else:
        for name in OURS:
            entry = folder / name
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
    for parent in sorted((p for p in made if p != folder and folder.is_relative_to(p)), key=lambda p: -len(p.parts)):
        try:
            parent.rmdir()  # only when empty
        except OSError:
            break  # not empty, or busy: it stays, and so does every folder above it


class RunFolder:
    """`with RunFolder(run_dir):` the command's hold on its run folder: locked for this process,
    cleared of stale temporary files; if the command fails before writing any result, the folder
    is removed (a refusal leaves nothing behind)."""

    def __init__(self, path: Path, remove_on_failure: bool = True, made: list[Path] | None = None):
        self.path = Path(path)
        self.remove_on_failure = remove_on_failure  # a sweep records a failed job in its folder
        self.made = made  # the folders this command created (not_there_yet), removed after a failure
        self.fd: int | None = None

    def __enter__(self) -> "RunFolder":
        self.path.mkdir(parents=True, exist_ok=True)
        lock = self.path / LOCK_NAME
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise busy_error(self.path, holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.fd = fd
        clean_stale_temps(self.path)
        return self

    def release(self) -> None:
        if self.fd is not None:
            (self.path / LOCK_NAME).unlink(missing_ok=True)
            os.close(self.fd)
            self.fd = None

    def __exit__(self, kind, error, tb) -> None:
        self.release()
        if self.remove_on_failure and kind is not None and not issubclass(kind, (KeyboardInterrupt, SystemExit)):
            remove_if_unused(self.path, self.made)


def os_error_line(e: OSError) -> str:
    """One line for a failed read or write: what, where, and what to do."""
    where = e.filename or "a file"
    if e.errno == errno.ENOSPC or e.errno == errno.EDQUOT:
        return f"no space left on the disk while writing {where}; free some space, or pass hydra.run.dir=DIR on another disk"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"cannot write {where}: {e.strerror.lower()}; pass hydra.run.dir=DIR to a folder you can write "
                "(or fix its permissions)")
    if e.errno in (errno.EEXIST, errno.ENOTDIR):
        return f"cannot create the folder {where}: a file is in the way; remove it or pass another hydra.run.dir"
    return f"{e.strerror or e} ({where})"
