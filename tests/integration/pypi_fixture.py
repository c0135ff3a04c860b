"""A tiny PyPI-style simple index on 127.0.0.1 with two wheels built on the spot (no network).

`alpha 1.0` needs `beta 1.0`; both are pure-Python wheels. `serve_index(dir)`
returns the server (stop it with `shutdown()`) and its base URL; the index is
at BASE/simple/, the wheels at BASE/files/, and BASE/files/data.txt is a plain
file for `[[input]]`.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import threading
import zipfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any


@dataclass
class Index:
    server: http.server.ThreadingHTTPServer
    url: str  # http://127.0.0.1:PORT
    hashes: dict[str, str]  # wheel file name or "data.txt" -> sha256 hex
    requests: list[str]  # paths asked for

    def requirements(self) -> str:
        return "".join(
            f"{n}==1.0 --hash=sha256:{self.hashes[f'{n}-1.0-py3-none-any.whl']}\n" for n in ("alpha", "beta")
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _wheel(dest: Path, name: str, code: str, requires: list[str]) -> Path:
    whl = dest / f"{name}-1.0-py3-none-any.whl"
    info = f"{name}-1.0.dist-info"
    files = {
        f"{name}/__init__.py": code.encode(),
        f"{info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
            + "".join(f"Requires-Dist: {r}\n" for r in requires)
        ).encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: p2pci-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = ""
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += f"{path},sha256={digest},{len(data)}\n"
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    with zipfile.ZipFile(whl, "w") as z:
        for path, data in files.items():
            z.writestr(zipfile.ZipInfo(path, (2020, 1, 1, 0, 0, 0)), data)
    return whl


def serve_index(root: Path) -> Index:
    files = root / "files"
    files.mkdir(parents=True)
    wheels = [
        _wheel(
            files,
            "alpha",
            "from beta import VALUE\n\n\ndef hello():\n    return 'alpha+' + VALUE\n",
            ["beta ==1.0"],
        ),
        _wheel(files, "beta", "VALUE = 'beta'\n", []),
    ]
    (files / "data.txt").write_text("pinned data\n")
    hashes = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in [*wheels, files / "data.txt"]}
    for w in wheels:
        project = w.name.split("-")[0]
        d = root / "simple" / project
        d.mkdir(parents=True)
        (d / "index.html").write_text(
            f'<!DOCTYPE html><html><body><a href="/files/{w.name}#sha256={hashes[w.name]}">{w.name}</a>'
            "</body></html>\n"
        )
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return Index(server, f"http://127.0.0.1:{server.server_address[1]}", hashes, requests)
