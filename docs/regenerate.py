"""The command line every generated doc's script shares: rewrite the file when its text changed, or, with
--check, write nothing and exit 1 if it is stale (what the tests check)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable


def main(target: Path, render: Callable[[], str], script: str, description: str,
         argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true", help=f"exit 1 if {target.name} is stale; write nothing")
    args = parser.parse_args(argv)
    text = render()
    current = target.read_text(encoding="utf-8") if target.exists() else None
    if args.check:
        if current != text:
            print(f"{target} is stale: run `python docs/{script}`", file=sys.stderr)
            return 1
        print(f"{target} is up to date")
        return 0
    if current == text:
        print(f"{target} is already up to date")
    else:
        target.write_text(text, encoding="utf-8")
        print(f"Wrote {target}")
    return 0
