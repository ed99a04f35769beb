"""Moved to common.files (any floor may write a file atomically); the names stay importable
here for code written against them."""
from common.files import (FULL_DISK, WriteError, full_disk, reporting,  # noqa: F401
                          write_atomic, write_json_atomic)
