"""Live log lines of remote workers, for the publisher (docs/protocol.md §8.6).

While a control client is subscribed, the publisher's daemon asks each worker its job has
selected (phase `selected` or `committed` in `worker_rows`) for the new bytes of its build log
over `/p2pci/logtail/1`, about every LOGTAIL_EVERY_S seconds, and broadcasts them as the same
`{event: "log", job, worker, text}` events as its own builds'. Hostile input: each reply is at
most `wire.LOGTAIL_MAX` bytes, at most LOGTAIL_FORWARD_MAX bytes are forwarded per worker and
job, "bytes skipped" markers included (then that worker is no longer asked), text is decoded with errors="replace"; printers make
it safe (`p2pci.textsafe`) exactly as for local lines.
"""

from __future__ import annotations

import codecs

from p2pci.daemon.livelog import LOG_EVENT_MAX

LOGTAIL_EVERY_S = 1.0  # seconds between two rounds of requests
LOGTAIL_TIMEOUT_S = 5.0  # one request, from the publisher's side
LOGTAIL_BURST = 4  # requests to one worker in one round while it has more
LOGTAIL_FORWARD_MAX = 1 << 20  # bytes of one worker's log forwarded per job, then it is not asked again


class RemoteTail:
    """Where the publisher is in one worker's log of one job; text out in whole lines."""

    def __init__(self) -> None:
        self.offset = 0  # the next byte to ask for
        self.forwarded = 0
        self.done = False  # cap reached or the worker cannot answer: not asked again
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._carry = ""

    def feed(self, off: int, data: bytes) -> str:
        """A reply's bytes (`off` ≥ self.offset): the text to send now (complete lines)."""
        out = ""
        if off > self.offset:
            self._decoder.reset()
            marker = f"[p2pci: {off - self.offset} bytes of log skipped]\n"
            out = self._flush() + marker
            self.forwarded += len(marker)  # counted too: a worker skipping a byte per reply makes one each
        room = max(0, LOGTAIL_FORWARD_MAX - self.forwarded)
        take = data[:room]
        self.offset = off + len(data)
        self.forwarded += len(take)
        text = self._carry + self._decoder.decode(take)
        nl = text.rfind("\n") + 1
        send, self._carry = text[:nl], text[nl:]
        if len(self._carry) > LOG_EVENT_MAX:  # a very long line: send a piece
            send, self._carry = text, ""
        out += send
        if self.forwarded >= LOGTAIL_FORWARD_MAX:
            self.done = True
            out += self.finish() + f"[p2pci: live log of this worker stopped after {LOGTAIL_FORWARD_MAX} bytes]\n"
        return out

    def finish(self) -> str:
        """What is left (an incomplete last line), once the worker is no longer asked."""
        return self._flush()

    def _flush(self) -> str:
        text = self._carry + self._decoder.decode(b"", final=True)
        self._carry = ""
        return text + "\n" if text and not text.endswith("\n") else text
