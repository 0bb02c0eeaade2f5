"""Work that takes too long, for timeout tests."""

import time


def sleep(seconds: float) -> None:
    time.sleep(seconds)
