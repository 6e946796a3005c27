"""Configuration errors and source positions (PURE).

Every token and statement knows where it came from; a ConfigError renders the way nginx and
keepalived report problems: `unknown directive "foo" in /etc/nginx/nginx.conf:3`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Pos:
    """A position in a configuration file (1-based line and column)."""

    file: str
    line: int
    col: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


# Where -g / command-line directives come from; nginx says "in command line".
COMMAND_LINE = Pos("command line", 0, 0)


class ConfigError(Exception):
    """A configuration problem, with the position nginx or keepalived would name."""

    def __init__(self, message: str, pos: Pos | None = None, level: str = "emerg") -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos
        self.level = level

    def __str__(self) -> str:
        if self.pos is None:
            return self.message
        if self.pos is COMMAND_LINE or self.pos.file == COMMAND_LINE.file:
            return f"{self.message} in command line"
        return f"{self.message} in {self.pos}"
