"""A stand-in for an asyncio transport, for driving HttpConnection and UpstreamConnection in
process (tests): it records what is written and when it was closed, and has no socket."""

from __future__ import annotations

import time
from typing import Any


class FakeTransport:
    """Enough of a transport for the nginx role's protocols; `out` holds what was written."""

    def __init__(self, peername: tuple[str, int] = ("127.0.0.1", 5555),
                 sockname: tuple[str, int] = ("127.0.0.1", 9)) -> None:
        self.out: list[bytes] = []
        self.closed_at: float | None = None  # time.monotonic() of the first close()
        self.eof = False  # write_eof() was called
        self.extra = {"peername": peername, "sockname": sockname}

    @property
    def closed(self) -> bool:
        return self.closed_at is not None

    def get_extra_info(self, key: str, default: Any = None) -> Any:
        return self.extra.get(key, default)

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def writelines(self, data: list[bytes]) -> None:
        self.out.extend(data)

    def take(self) -> bytes:
        """What was written since the last take()."""
        data = b"".join(self.out)
        self.out.clear()
        return data

    def close(self) -> None:
        if self.closed_at is None:
            self.closed_at = time.monotonic()

    abort = close

    def write_eof(self) -> None:
        self.eof = True

    def is_closing(self) -> bool:
        return self.closed_at is not None

    def set_write_buffer_limits(self, **kwargs: Any) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0
