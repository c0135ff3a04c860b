"""greet: say hello, reproducibly."""

__version__ = "1.0.0"


def greeting(who: str = "world") -> str:
    return f"Hello, {who}!"
