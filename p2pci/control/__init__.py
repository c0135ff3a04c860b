"""The control socket, daemon <-> CLI/TUI: one framing, one client, one server, one schema.

* `frames`: 4-byte big-endian length + msgpack body (`pack_frame`, `FrameBuffer`, `FrameReader`).
* `client`: sync (`control_call`, `iter_events`, for the CLI) and trio (`request`, `acontrol_call`,
  `subscribe`, `open_control`, for the TUI and tests) faces of one client; `DaemonNotRunning`
  and `ControlError` are the two ways a call fails.
* `server`: `serve_control(path, handler)` (trio), used by the daemon.
* `schema`: the objects the daemon sends (job, node, peer, status) as TypedDicts, `VERDICTS`.

Requests are ``{op: str, args: map}``; replies ``{ok: true, result}`` or ``{ok: false, error}``;
``op = "subscribe"`` answers ``{ok: true}`` and then streams ``{event: str, ...}`` frames
(docs/protocol.md section 10, docs/internals.md "Control socket").
"""
