"""A reproducible zipapp: sorted entries, fixed timestamps and modes, no bytecode.

`python3 -m zipapp` stores each file's mtime and the directory order, so two builds differ.
"""

import sys
import zipfile
from pathlib import Path

EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip can hold


def main(src: str, dest: str) -> None:
    root = Path(src)
    files = sorted(
        (p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts),
        key=lambda p: p.relative_to(root).as_posix().encode(),
    )
    with open(dest, "wb") as f:
        f.write(b"#!/usr/bin/env python3\n")
        with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
            info = zipfile.ZipInfo("__main__.py", EPOCH)
            info.external_attr = 0o644 << 16
            z.writestr(info, "import runpy\nrunpy.run_module('daysuntil', run_name='__main__')\n")
            for p in files:
                info = zipfile.ZipInfo(p.relative_to(root).as_posix(), EPOCH)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(info, p.read_bytes())
    Path(dest).chmod(0o755)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
