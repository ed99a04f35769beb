"""The run folder before training starts: created and writable, holding no other
architecture, and claimed by one train.py at a time (`.lock`).

Imports no TensorFlow: a wrong or busy folder fails in a second.
"""
import atexit
import fcntl
import json
import os
import socket
import time

from common.errors import UserError
from common.files import reporting
from learning.config import Config, resume_changes


def check_save_dir(save_dir, config):
    """Create the run folder; refuse to resume a run with a different architecture."""
    if os.path.exists(save_dir) and not os.path.isdir(save_dir):
        raise UserError(f"--save-dir '{save_dir}' is a file: pass a folder (a new one, or "
                        "a run to resume)")
    try:
        os.makedirs(save_dir, exist_ok=True)
        probe = os.path.join(save_dir, ".write_test")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise UserError(f"--save-dir '{save_dir}' cannot be written ({e.strerror}): "
                        "choose another folder") from None
    old_path = os.path.join(save_dir, "hyperparam.json")
    if os.path.exists(os.path.join(save_dir, "checkpoints")) and os.path.exists(old_path):
        # Fails in a second, before TensorFlow loads; the optimizer checks the config the
        # checkpoint itself holds again when it resumes.
        resume_changes(Config.from_json(old_path), config,
                       where=f"--save-dir '{save_dir}' holds a run")


LOCK_FILE = ".lock"


def lock_save_dir(save_dir):
    """Claim the run folder for this process, so that two train.py never write one folder.

    `save_dir/.lock` holds this process's pid, host and start time, under an exclusive
    flock: the kernel drops a flock when its process dies, kill -9 included, so a lock
    file whose flock can be taken was left by a process that is gone, and is taken over
    (on a file system without flock: when its pid is not running). One written on another
    host is not (its flock may not reach this host): the error says which process to
    check. Returns the function that releases the lock (also run at exit)."""
    path = os.path.join(save_dir, LOCK_FILE)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        flocked = True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_lock(fd)
            os.close(fd)
            raise UserError(_in_use(save_dir, holder)) from None
        except OSError:
            flocked = False
        if _same_file(fd, path):
            break
        os.close(fd)  # locked a file its owner had just removed: take the new one
    holder, host = _read_lock(fd), socket.gethostname()
    if holder and (holder.get("host") != host
                   or not flocked and _running(holder.get("pid"))):
        os.close(fd)
        raise UserError(_in_use(save_dir, holder) + f" (if it has stopped, delete {path})")
    if holder:
        print(f"taking over the lock of pid {holder.get('pid')} (started "
              f"{holder.get('started')}), which is no longer running")
    record = {"pid": os.getpid(), "host": host,
              "started": time.strftime("%Y-%m-%d %H:%M:%S %z")}
    with reporting(path):
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        os.fsync(fd)
    released = []

    def release():
        """Remove the file, then drop the flock: no one can take a removed file."""
        if not released:
            released.append(True)
            if _same_file(fd, path):
                os.remove(path)
            os.close(fd)
    atexit.register(release)
    return release


def _read_lock(fd):
    """The lock file's record, or None when it is empty or unreadable."""
    try:
        record = json.loads(os.pread(fd, 4096, 0).decode())
        return record if isinstance(record, dict) else None
    except (OSError, ValueError):
        return None


def _running(pid):
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (TypeError, ValueError, PermissionError):
        return True  # someone else's process, or a record we cannot read: assume so
    return True


def _same_file(fd, path):
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _in_use(save_dir, holder):
    who = ("train.py (pid {pid} on host {host}, started {started})".format(**holder)
           if holder and {"pid", "host", "started"} <= set(holder)
           else "another train.py (its lock is still being written)")
    return (f"--save-dir '{save_dir}' is in use by {who}; wait for it or stop it, or choose "
            "another --save-dir")
