"""`p2pci status`: a Textual app, a separate client of the control socket.

Textual runs on asyncio; our control client is trio. The client therefore
runs `trio.run` in one background thread and hands every frame to the app
with `post_message` (thread-safe). Nothing polls the daemon: the thread
blocks on the `subscribe` stream and the screen changes when a frame
arrives. A once-a-second timer only re-renders ages and the uptime.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import trio
from rich.markup import escape
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, RichLog, Static

from p2pci.control.client import open_control, request
from p2pci.control.frames import BadFrame, FrameReader, encode_frame
from p2pci.core.errors import P2pciError
from p2pci.textsafe import safe_text
from p2pci.tui import model as m

RETRY_MIN_S = 0.2
RETRY_MAX_S = 2.0
REQUEST_TIMEOUT_S = 30.0


def wall_ms() -> int:
    return int(time.time() * 1000)


# -- messages from the client thread -----------------------------------------


class Snapshot(Message):
    def __init__(self, result: Any) -> None:
        super().__init__()
        self.result = result


class Frame(Message):
    def __init__(self, frame: Any) -> None:
        super().__init__()
        self.frame = frame


class Connection(Message):
    def __init__(self, connected: bool, error: str | None = None) -> None:
        super().__init__()
        self.connected = connected
        self.error = error


class LogText(Message):
    def __init__(self, job: str, text: str) -> None:
        super().__init__()
        self.job = job
        self.text = text


# -- the detail screen --------------------------------------------------------


MOVE = Binding.Group("Move", compact=True)
SCROLL = Binding.Group("Scroll")


class JobsTable(DataTable[Any]):
    """The jobs list: its keys are listed in the footer (Enter, the arrows, j/k)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Detail", key_display="Enter"),
        Binding("up", "cursor_up", "Up", key_display="↑", group=MOVE),
        Binding("down", "cursor_down", "Down", key_display="↓", group=MOVE),
        Binding("k", "cursor_up", "Up", group=MOVE),
        Binding("j", "cursor_down", "Down", group=MOVE),
    ]


class DetailScroll(VerticalScroll):
    """The job detail (it can be longer than the screen): its scroll keys are in the footer."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "scroll_up", "Up", key_display="↑", group=SCROLL),
        Binding("down", "scroll_down", "Down", key_display="↓", group=SCROLL),
        Binding("pageup", "page_up", "Page up", key_display="PgUp", group=SCROLL),
        Binding("pagedown", "page_down", "Page down", key_display="PgDn", group=SCROLL),
    ]


class JobScreen(Screen[None]):
    """One job: groups by digest, dissenters, equivocators, ignored votes, select rounds, each
    worker's phase, deadlines, whether the evidence is complete, and a log pane."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back", key_display="Esc"),
        Binding("l", "app.logs", "Logs"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id
        self.has_log = False  # any line written to the log pane (a hidden RichLog defers its writes)

    def compose(self) -> ComposeResult:
        with Vertical():
            with DetailScroll(id="detail-scroll"):
                yield Static(id="detail")
            yield RichLog(id="log", max_lines=m.LOG_LINES, wrap=False, markup=False)
        yield Footer()

    def on_mount(self) -> None:
        log = self.query_one("#log", RichLog)
        self.query_one("#detail-scroll", DetailScroll).focus()
        app = self.app
        if isinstance(app, StatusApp):
            for line in app.model.logs.get(self.job_id, ()):
                log.write(Text(line))  # already made safe by the model
                self.has_log = True
        self.refresh_detail()

    def show_log_if_it_can_fill(self) -> None:
        """The log pane shows this node's build live, and what `l` fetches. On a node that never
        builds (`--no-build`) it stays hidden until `l` brings a log: it could never fill otherwise."""
        log = self.query_one("#log", RichLog)
        app = self.app
        node = app.model.node if isinstance(app, StatusApp) else None
        builds = node is None or node.slots != 0
        if builds:
            log.border_title = "log: this node's build, live as it runs · l fetches every revealed log"
        else:
            log.border_title = "log: the revealed logs (l)"
        log.display = builds or self.has_log
        detail = self.query_one("#detail-scroll", DetailScroll)
        detail.styles.height = "auto" if log.display else "1fr"  # alone, the detail takes the screen
        detail.styles.max_height = "70%" if log.display else "100%"

    def refresh_detail(self) -> None:
        app = self.app
        if not isinstance(app, StatusApp):
            return
        job = app.model.jobs.get(self.job_id)
        detail = self.query_one("#detail", Static)
        self.show_log_if_it_can_fill()
        if job is None:
            detail.update(Text(f"job {self.job_id}: not on the board"))
            return
        text = Text()
        for i, line in enumerate(m.detail_lines(app.model, job, app.clock())):
            if i == 2:
                text.append(line + "\n", style=m.VERDICT_STYLE.get(job.verdict, ""))
            else:
                text.append(line + "\n")
        detail.update(text)

    def append_log(self, lines: list[str]) -> None:
        log = self.query_one("#log", RichLog)
        for line in lines:  # peer text: escaped, and a Text so that no markup is parsed
            log.write(Text(safe_text(line)))
            self.has_log = True
        self.show_log_if_it_can_fill()


# -- the main app ---------------------------------------------------------------


class StatusApp(App[int]):
    TITLE = "p2pci status"
    CSS = """
    #conn { height: 1; padding: 0 1; }
    #conn.down { background: $error; color: $text; }
    #node { height: auto; border: round $primary; padding: 0 1; }
    #peers { height: 8; border: round $primary; }
    #jobs { height: 1fr; border: round $primary; }
    #detail-scroll { height: auto; max-height: 70%; border: round $primary; }
    #detail { height: auto; padding: 0 1; }
    #log { height: 1fr; min-height: 5; border: round $primary; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("f", "filter", "Filter"),
        Binding("l", "logs", "Logs"),
    ]

    def __init__(
        self,
        sock: Path | None,
        *,
        clock: Callable[[], int] = wall_ms,
        model: m.StatusModel | None = None,
    ) -> None:
        """`sock=None` shows `model` without connecting (snapshots, demos)."""
        super().__init__()
        self.sock = sock
        self.clock = clock
        self.model = model if model is not None else m.StatusModel()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._trio_token: trio.lowlevel.TrioToken | None = None
        self._trio_scope: trio.CancelScope | None = None

    # layout

    def compose(self) -> ComposeResult:
        yield Static("connecting…", id="conn")
        yield Static(id="node")
        yield DataTable(id="peers", cursor_type="none", zebra_stripes=True)
        yield JobsTable(id="jobs", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#node", Static).border_title = "this node"
        peers = self.query_one("#peers", DataTable)
        peers.border_title = "peers"
        peers.can_focus = False
        for label in ("peer", "via", "address", "connected"):
            peers.add_column(label, key=label)
        jobs = self.query_one("#jobs", DataTable)
        for label in m.JOB_COLUMNS:
            jobs.add_column(label, key=label)
        jobs.focus()
        if self.sock is None:
            self.model.connected = True
        self.render_all()
        self.set_interval(1.0, self.render_times)
        if self.sock is not None:
            self._thread = threading.Thread(target=self._client_thread, name="p2pci-status-client", daemon=True)
            self._thread.start()

    def on_unmount(self) -> None:
        self._stop.set()
        token, scope = self._trio_token, self._trio_scope
        if token is not None and scope is not None:
            try:
                trio.from_thread.run_sync(scope.cancel, trio_token=token)
            except trio.RunFinishedError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    # rendering

    def render_all(self) -> None:
        self.render_conn()
        self.render_node()
        self.render_peers()
        self.render_jobs()

    def render_times(self) -> None:
        self.render_node()
        self.render_peers()
        self.render_jobs()
        self._refresh_detail()  # its deadlines count down

    def render_conn(self) -> None:
        conn = self.query_one("#conn", Static)
        if self.model.connected:
            conn.update(f"connected to {self.sock}" if self.sock else "offline view")
            conn.remove_class("down")
        else:
            why = f" ({self.model.error})" if self.model.error else ""
            conn.update(Text(safe_text(f"disconnected, retrying{why}")))
            conn.add_class("down")

    def render_node(self) -> None:
        self.query_one("#node", Static).update(Text("\n".join(m.node_lines(self.model, self.clock()))))

    def render_peers(self) -> None:
        table = self.query_one("#peers", DataTable)
        table.border_title = f"peers ({len(self.model.peers)})"
        table.clear()
        now = self.clock()
        for p in self.model.peers:
            table.add_row(*(escape(c) for c in m.peer_row(p, now)), key=p.peer_id)

    def job_cells(self, job: m.Job, now: int) -> list[str | Text]:
        cells: list[str | Text] = [escape(c) for c in m.job_row(self.model, job, now)]  # peer text is no markup
        cells[-1] = Text(job.verdict, style=m.VERDICT_STYLE.get(job.verdict, ""))
        return cells

    def render_jobs(self) -> None:
        table = self.query_one("#jobs", DataTable)
        shown = self.model.visible_jobs()
        table.border_title = f"jobs ({len(shown)}) · filter: {self.model.filter or 'all'}"
        now = self.clock()
        keys = [j.job for j in shown]
        if keys == [k.value for k in table.rows]:
            for job in shown:
                for col, cell in zip(m.JOB_COLUMNS, self.job_cells(job, now), strict=True):
                    table.update_cell(job.job, col, cell)
            return
        selected = self.selected_job()
        table.clear()
        for job in shown:
            table.add_row(*self.job_cells(job, now), key=job.job)
        if selected in keys:
            table.move_cursor(row=keys.index(selected))

    def selected_job(self) -> str | None:
        table = self.query_one("#jobs", DataTable)
        if table.row_count == 0:
            return None
        row_key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return row_key.value

    def detail_screen(self) -> JobScreen | None:
        screen = self.screen
        return screen if isinstance(screen, JobScreen) else None

    # messages from the client thread

    def on_snapshot(self, message: Snapshot) -> None:
        self.model.apply_status(message.result, self.clock())
        self.render_all()
        self._refresh_detail()

    def on_frame(self, message: Frame) -> None:
        kind = self.model.apply_event(message.frame, self.clock())
        if kind == "job":
            self.render_jobs()
            self._refresh_detail()
        elif kind == "peers":
            self.render_peers()
        elif kind == "node":
            self.render_node()
            self._refresh_detail()
        elif kind == "log":
            frame = message.frame
            screen = self.detail_screen()
            if screen is not None and str(frame.get("job", "")).lower() == screen.job_id:
                screen.append_log(str(frame.get("text", "")).splitlines())

    def on_connection(self, message: Connection) -> None:
        self.model.connected = message.connected
        self.model.error = message.error
        self.render_conn()

    def on_log_text(self, message: LogText) -> None:
        screen = self.detail_screen()
        if screen is not None and screen.job_id == message.job:
            screen.append_log(["--- log from the daemon ---", *message.text.splitlines()])

    def _refresh_detail(self) -> None:
        screen = self.detail_screen()
        if screen is not None:
            screen.refresh_detail()

    # keys

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """List-only keys are hidden (and off) while a job's detail is open."""
        if action == "filter" and self.detail_screen() is not None:
            return False
        return True

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "jobs" and event.row_key.value is not None:
            self.push_screen(JobScreen(event.row_key.value))

    def action_filter(self) -> None:
        if self.detail_screen() is None:
            self.model.cycle_filter()
            self.render_jobs()

    def action_logs(self) -> None:
        """Open the job (if needed) and ask the daemon for its full log."""
        screen = self.detail_screen()
        job = screen.job_id if screen is not None else self.selected_job()
        if job is None:
            return
        if screen is None:
            self.push_screen(JobScreen(job))
        if self.sock is not None:
            self.run_worker(lambda: self._fetch_log(job), thread=True, exclusive=True, group="logs")

    def _fetch_log(self, job: str) -> None:
        assert self.sock is not None
        sock = self.sock
        async def fetch() -> Any:
            with trio.fail_after(REQUEST_TIMEOUT_S):
                return await request(sock, "logs", job=job)

        try:
            text = trio.run(fetch)
        except (P2pciError, OSError) as exc:
            text = f"(no log: {exc})"
        except trio.TooSlowError:
            text = f"(no log: the daemon did not answer within {REQUEST_TIMEOUT_S:.0f} s)"
        self.post_message(LogText(job, text if isinstance(text, str) else repr(text)[:4096]))

    # the client thread (trio)

    def _client_thread(self) -> None:
        try:
            trio.run(self._client_main)
        except Exception as exc:  # never let the thread die silently
            self.post_message(Connection(False, f"client stopped: {exc}"))

    async def _client_main(self) -> None:
        assert self.sock is not None
        with trio.CancelScope() as scope:
            self._trio_token = trio.lowlevel.current_trio_token()
            self._trio_scope = scope
            if self._stop.is_set():
                return
            delay = RETRY_MIN_S
            while True:
                try:
                    got_data = await self._session(self.sock)
                    error = "the daemon closed the connection"
                except (P2pciError, OSError) as exc:
                    got_data = False
                    error = str(exc)
                except trio.TooSlowError:
                    got_data = False
                    error = "the daemon does not answer"
                self.post_message(Connection(False, error))
                delay = RETRY_MIN_S if got_data else min(delay * 2, RETRY_MAX_S)
                await trio.sleep(delay)  # reconnect backoff, not a poll of the daemon

    async def _session(self, sock: Path) -> bool:
        """Subscribe, then take a status snapshot, then stream events until EOF."""
        stream = await open_control(sock)
        async with stream:
            await stream.send_all(encode_frame({"op": "subscribe", "args": {}}))
            with trio.fail_after(REQUEST_TIMEOUT_S):
                snapshot = await request(sock, "status")
            self.post_message(Connection(True))
            self.post_message(Snapshot(snapshot))
            reader = FrameReader(stream)
            while True:
                try:
                    frame = await reader.read()
                except BadFrame:
                    self.post_message(Frame(None))  # counted as malformed by the model
                    continue
                if frame is None:
                    return True
                if isinstance(frame, dict) and "ok" in frame and "event" not in frame:
                    if frame.get("ok") is not True:
                        raise P2pciError(f"daemon refused subscribe: {frame.get('error')}")
                    continue
                self.post_message(Frame(frame))
