import sys

from greet import greeting


def main() -> None:
    print(greeting(sys.argv[1] if len(sys.argv) > 1 else "world"))
