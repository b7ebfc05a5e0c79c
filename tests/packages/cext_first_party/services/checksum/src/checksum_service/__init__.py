"""Prints the checksum of its arguments: a service that uses the compiled shared package."""

import sys

from wheelpipe_fixture_native import checksum_text


def main() -> None:
    print(checksum_text(" ".join(sys.argv[1:])))
