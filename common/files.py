"""Writing a file so that a crash never leaves half of one: the project's one helper for it.

Imports only common.errors, so any module (datasets, models, learning) may use it.
"""
import contextlib
import errno
import json
import os
import re
import tempfile
from pathlib import Path

from common.errors import UserError


class WriteError(UserError):
    """A file that cannot be written (a full disk, no permission): which one, why, and
    (`advice`) what to do."""

    def __init__(self, path, reason, advice=None):
        super().__init__(f"cannot write '{path}' ({reason})" + (f": {advice}" if advice else ""))
        self.path, self.reason = str(path), reason


# What a full disk (or quota) reads as in a library's message, such as TensorFlow's.
FULL_DISK = tuple(os.strerror(e) for e in (errno.ENOSPC, errno.EDQUOT))


def full_disk(error):
    """A WriteError for a library's error that says a disk is full, "PATH; No space left
    on device" (TensorFlow's TensorBoard writer and checkpoint ops); None for any other."""
    first = (str(error).strip().splitlines() or [""])[0]
    first = re.sub(r"^\{\{[^}]*\}\}\s*", "", first)     # TensorFlow's {{function_node ...}}
    for reason in FULL_DISK:
        if reason in first:
            return WriteError(first.split(";")[0].strip(), reason)
    return None


@contextlib.contextmanager
def reporting(path):
    """Turn an OSError raised while writing `path` into a WriteError that names it: a write
    that fails on a full disk says ENOSPC without a file name."""
    try:
        yield
    except OSError as e:
        raise WriteError(path, e.strerror or str(e)) from None


def write_atomic(path, write_fn, mode="wb", fsync=False):
    """Write `path` through `write_fn(f)` on a temporary file, then rename it over `path`.

    The temporary file is made by `tempfile.mkstemp` in the same folder (a rename is atomic
    only within one file system) with a unique name `.<name>.<random>.tmp`, so two writers
    never share it; a reader sees the old file or the new one, never a partial one. The folder
    is created if missing. `mode` is "wb" or "w" (text). `fsync=True` flushes the data to disk
    before the rename, so that a power cut cannot leave an empty file under the new name
    (records a run cannot recompute); caches skip it. The file gets the usual permissions
    (0666 less the umask), not mkstemp's 0600. On any error the temporary file is removed and
    `path` is untouched; an OSError (a full disk) becomes a WriteError naming `path`.
    """
    path = Path(path)
    with reporting(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, mode) as f:
                write_fn(f)
                if fsync:
                    f.flush()
                    os.fsync(f.fileno())
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    return path


def write_json_atomic(path, obj):
    """Write `obj` as indented JSON (a record: synced before the rename), atomically."""
    def write(f):
        json.dump(obj, f, indent=2)
        f.write("\n")
    write_atomic(path, write, mode="w", fsync=True)
