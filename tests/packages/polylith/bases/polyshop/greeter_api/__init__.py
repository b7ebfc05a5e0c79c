"""A Polylith base: the greeter's entry point, built from the words component."""

from polyshop import words


def main() -> None:
    print(words.greeting("polylith"))
