"""Fails when a shipped shared library would misbehave where it lands:
- a search path that reaches the current directory or a directory of the build machine: every
  RPATH/RUNPATH entry must be non-empty and relative to $ORIGIN, or one of the directories named
  with --allow (the torch an installed C++ package was built against);
- a private copy of the C++ runtime: the library must load the shared libstdc++ that torch uses.
  A toolchain that links libstdc++ statically gives it its own locale facets, and formatting a
  number in an error message then crashed Python (seen on an H200 machine's image).

Usage: python scripts/check_library.py [--allow DIR ...] LIBRARY [LIBRARY ...]   (needs readelf)
"""

import argparse
import os
import re
import subprocess
import sys


def _dynamic_section(library: str) -> str:
    return subprocess.run(["readelf", "-d", library], check=True, capture_output=True, text=True).stdout


def search_paths(library: str) -> list[str]:
    """The RPATH and RUNPATH entries of a shared library, in order (empty entries kept)."""
    return [entry for value in re.findall(r"\((?:RPATH|RUNPATH)\)\s+Library r(?:un)?path: \[(.*)\]",
                                          _dynamic_section(library))
            for entry in value.split(":")]


def unsafe_entries(library: str, allowed: tuple[str, ...] = ()) -> list[str]:
    allowed_dirs = {os.path.realpath(d) for d in allowed}
    return [entry for entry in search_paths(library)
            if not entry.startswith("$ORIGIN") and (not entry or os.path.realpath(entry) not in allowed_dirs)]


def needed(library: str) -> list[str]:
    """The shared libraries it names as NEEDED."""
    return re.findall(r"\(NEEDED\)\s+Shared library: \[(.*)\]", _dynamic_section(library))


def shares_libstdcxx(library: str) -> bool:
    return any(name.startswith("libstdc++.so") for name in needed(library))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--allow", action="append", default=[], help="an allowed absolute directory")
    parser.add_argument("libraries", nargs="+")
    args = parser.parse_args()
    failed = False
    for library in args.libraries:
        bad = unsafe_entries(library, tuple(args.allow))
        print(f"{library}: search path {search_paths(library) or 'none'}"
              + (f" -- unsafe entries {bad}" if bad else ""))
        if not shares_libstdcxx(library):
            print(f"{library}: libstdc++ is linked into it statically (NEEDED: {needed(library)}); "
                  "it must load the shared libstdc++ that torch uses: look for a libstdc++.a that "
                  "the link line's -L paths reach before libstdc++.so")
            bad = True
        failed |= bool(bad)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
