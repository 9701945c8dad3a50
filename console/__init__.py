"""The operator console: a server-rendered web application over the store (issue 14, docs/CONSOLE.md).

    python -m console --store URL [--listen HOST:PORT] [--recommender HOST:PORT] [--config FILE]
    python -m console user add NAME --role viewer|marketer|admin --store URL   (password: stdin)

Starlette + Jinja2, no build step and no JavaScript needed (small scripts only add the live
segment count and a long report's progress); charts are inline SVG drawn by console.charts, each
with a table or CSV beside it. Long reports run as per-user background jobs (console.reports,
console.jobs).

Errors:
    ConsoleError            root
    ├── LoginRefused        wrong name or password, or a disabled user (one message for all)
    └── BadUserInput        a user name, role or password that cannot be stored
"""

from __future__ import annotations


class ConsoleError(Exception):
    retryable = False


class LoginRefused(ConsoleError):
    def __init__(self) -> None:
        super().__init__("unknown user or wrong password")


class BadUserInput(ConsoleError):
    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field
