"""Run the toolkit CLI in this process and print its peak resident memory (VmHWM) on stderr when it exits:
`python -P tests/support/cli_peak_memory.py bench model.onnx` measures the CLI alone, not its children."""

import atexit
import sys


def _report() -> None:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            sys.stderr.write(f"peak-rss-kb {line.split()[1]}\n")


atexit.register(_report)
from toolkit.cli import main  # noqa: E402

sys.argv = ["toolkit", *sys.argv[1:]]
main()
