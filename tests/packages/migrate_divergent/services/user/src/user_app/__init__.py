"""The user service: prints its label."""

from wording import label


def main() -> None:
    print(label("user"))
