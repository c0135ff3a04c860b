"""A running build's output on its way to subscribers.

The runner's `on_log` callback (a runner thread) appends to a bounded `LiveLog`
and wakes a trio task (`stream`), which sends `{event: "log", job, worker,
text}` at most every `LOG_INTERVAL` seconds, whole lines only, at most
`LOG_EVENT_MAX` bytes per event (older text of a burst is skipped with a
marker). Nothing here waits on a subscriber: the node's broadcast drops a
subscriber that lags.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import trio

LOG_TAIL = 4096  # characters of a finished build's log sent to subscribers (runners without on_log)
LOG_INTERVAL = 0.25  # seconds between two live log events of one build
LOG_EVENT_MAX = 8192  # bytes of log text in one live event
LOG_BUFFER_MAX = 64 << 10  # bytes of not yet sent output kept per build (the newest; up to twice that)
LOG_RECENT_MAX = 1 << 20  # bytes of a running build's output kept for `p2pci logs`


class LiveLog:
    """One running build's output on its way to subscribers.

    `feed(chunk)` is the runner's `on_log`: called from any thread, it never blocks on trio
    (the wake-up goes through `TrioToken.run_sync_soon`). `take(final)` (trio side) returns
    the text to send: complete lines only (a line longer than `LOG_EVENT_MAX` is cut), or
    everything left when `final`.
    """

    def __init__(self, token: trio.lowlevel.TrioToken | None = None) -> None:
        self._token = token
        self._lock = threading.Lock()
        self._buf = bytearray()
        self._skipped = 0  # bytes dropped from the front of _buf since the last take
        self._scheduled = False
        self._carry = b""  # an incomplete last line (trio side only)
        self.recent = bytearray()  # the newest LOG_RECENT_MAX bytes, for `p2pci logs` while building
        self.fed = 0
        self.ready = trio.Event()

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        with self._lock:
            self.fed += len(chunk)
            # trimmed to the cap once twice the cap is reached: a chatty build costs no memmove per chunk
            self._buf += chunk
            if len(self._buf) > 2 * LOG_BUFFER_MAX:
                cut = len(self._buf) - LOG_BUFFER_MAX
                del self._buf[:cut]
                self._skipped += cut
            self.recent += chunk
            if len(self.recent) > 2 * LOG_RECENT_MAX:
                del self.recent[: len(self.recent) - LOG_RECENT_MAX]
            wake = not self._scheduled and self._token is not None
            self._scheduled = True
        if wake:
            assert self._token is not None
            try:
                self._token.run_sync_soon(self._wake)
            except trio.RunFinishedError:
                pass

    def _wake(self) -> None:
        self.ready.set()

    async def wait(self) -> None:
        await self.ready.wait()
        self.ready = trio.Event()

    def take(self, *, final: bool = False) -> str:
        with self._lock:
            data, skipped = bytes(self._buf), self._skipped
            self._buf.clear()
            self._skipped = 0
            self._scheduled = False
        if skipped:
            self._carry = b""  # its continuation was skipped
        data = self._carry + data
        if final:
            send, self._carry = data, b""
        else:
            nl = data.rfind(b"\n") + 1
            send, self._carry = data[:nl], data[nl:]
            if len(self._carry) > LOG_EVENT_MAX:  # a very long line (or no newlines at all): send a piece
                send, self._carry = data, b""
        if len(send) > LOG_EVENT_MAX:
            cut = len(send) - LOG_EVENT_MAX
            nl = send.find(b"\n", cut, len(send) - 1)
            cut = nl + 1 if nl >= 0 else cut
            skipped += cut
            send = send[cut:]
        if not send and not skipped:
            return ""
        text = send.decode("utf-8", "replace")
        if text and not text.endswith("\n"):
            text += "\n"
        if skipped:
            text = f"[p2pci: {skipped} bytes of log skipped]\n" + text
        return text

    def read(self, offset: int, limit: int) -> tuple[int, bytes, int]:
        """`(start, data, size)`: at most `limit` bytes of the output from `offset` (from `start`,
        later than `offset` when older output is no longer kept), and the bytes fed so far."""
        with self._lock:
            first = self.fed - len(self.recent)
            start = min(max(offset, first), self.fed)
            return start, bytes(self.recent[start - first : start - first + limit]), self.fed

    def recent_text(self) -> str:
        with self._lock:
            return bytes(self.recent[-LOG_RECENT_MAX:]).decode("utf-8", "replace")


async def stream(live: LiveLog, send: Callable[[str], None], scope: trio.CancelScope) -> None:
    """Send a running build's new output, at most every LOG_INTERVAL seconds, until `scope` ends."""
    with scope:
        while True:
            await live.wait()
            if scope.cancel_called:
                return  # the build ended: its last words went out with the final take
            send(live.take())
            await trio.sleep(LOG_INTERVAL)  # coalesce: what arrives meanwhile goes in the next event
