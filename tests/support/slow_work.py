"""Work that takes too long, for timeout tests."""

import time


def sleep(seconds: float) -> None:
    time.sleep(seconds)


def allocate(megabytes: int) -> int:
    """Touch `megabytes` of memory."""
    import numpy as np

    return int(np.ones(megabytes * 1024 * 1024, dtype=np.uint8).sum())
