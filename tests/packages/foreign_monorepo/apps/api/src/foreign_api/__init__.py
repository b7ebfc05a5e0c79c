"""The fixture's service: prints what its shared package makes of its name."""

from foreign_util import banner


def main() -> int:
    print(banner("foreign-api"))
    return 0
