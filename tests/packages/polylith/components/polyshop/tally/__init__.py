"""A Polylith component: the counter project's entry point."""

from polyshop import words


def main() -> None:
    print(words.greeting("tally"), len(words.greeting("tally")))
