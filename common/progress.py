"""Progress of the long passes (thousands of images at a few images/s): a bar while it
runs, and one line saying how long it took when done."""
from tqdm import tqdm


def progress_bar(total, desc, verbose=True):
    """A tqdm bar over `total` images with images/s and time left. Drawn (on stderr) only
    when `verbose` and stderr is a terminal: a log file gets `timing_line` instead."""
    return tqdm(total=total, desc=desc, unit="img", disable=None if verbose else True,
                mininterval=1.0, leave=False, dynamic_ncols=True)


def format_duration(seconds):
    """3.2 -> '3.2s', 1263 -> '21m03s', 3725 -> '1h02m05s'."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def timing_line(what, count, seconds):
    """How long a pass over `count` images took: timing_line("computed 10000 features", 10000,
    1263) -> 'computed 10000 features in 21m03s (7.9 images/s)'."""
    return f"{what} in {format_duration(seconds)} ({count / max(seconds, 1e-9):.1f} images/s)"
