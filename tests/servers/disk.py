"""A small real filesystem (tmpfs) for disk-usage checks that fill it to a chosen level.

``mount -t tmpfs -o size=8m`` needs root; tmpfs has no reserved blocks, so the used percent
``df`` prints is simply used / size (rounded up).
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

from .base import register_cleanup, require_binary, require_root, run, unregister_cleanup


class SmallFs:
    """A tmpfs of ``size_mb`` MiB mounted at ``path``; ``fill_to(pct)`` sets its usage."""

    def __init__(self, path: Path, size_mb: int = 8) -> None:
        self.path = Path(path)
        self.size_mb = size_mb
        self.fill_file = self.path / "fill.bin"
        self.mounted = False
        self._cleanup_handle: int | None = None

    def mount(self) -> SmallFs:
        require_root("mounting a tmpfs")
        require_binary("mount")
        self.path.mkdir(parents=True, exist_ok=True)
        run(
            [
                "mount",
                "-t",
                "tmpfs",
                "-o",
                f"size={self.size_mb}m,mode=0755",
                "tmpfs",
                str(self.path),
            ]
        )
        self.mounted = True
        self._cleanup_handle = register_cleanup(self.unmount)
        return self

    def unmount(self) -> None:
        if not self.mounted:
            return
        if run(["umount", str(self.path)], check=False).returncode != 0:
            # Something (a test's open file, a shell cwd) still holds it: detach lazily so
            # the session can end; the kernel frees it when the last user goes away.
            run(["umount", "-l", str(self.path)], check=False)
        self.mounted = False
        if self._cleanup_handle is not None:
            unregister_cleanup(self._cleanup_handle)
            self._cleanup_handle = None

    # -- usage
    def _stat(self) -> tuple[int, int, int]:
        st = os.statvfs(self.path)
        return st.f_blocks * st.f_frsize, st.f_bfree * st.f_frsize, st.f_bavail * st.f_frsize

    @property
    def total_bytes(self) -> int:
        return self._stat()[0]

    def used_bytes(self) -> int:
        total, free, _ = self._stat()
        return total - free

    def used_percent(self) -> int:
        """Used percent as ``df`` prints it (used / (used + avail), rounded up)."""
        total, free, avail = self._stat()
        used = total - free
        return math.ceil(100 * used / (used + avail)) if used + avail else 0

    def fill_to(self, percent: float) -> int:
        """Resize the fill file so usage is ``percent`` (0-100) of the filesystem; returns used %.

        Writes real bytes: tmpfs does not allocate pages for sparse (truncated) files.
        """
        if not 0 <= percent <= 100:
            raise ValueError("percent must be within 0..100")
        total = self.total_bytes
        current_fill = self.fill_file.stat().st_size if self.fill_file.exists() else 0
        other_used = self.used_bytes() - current_fill
        page = os.sysconf("SC_PAGE_SIZE")
        wanted = max(0, int(total * percent / 100) - other_used)
        wanted -= wanted % page  # whole pages, so the percent does not overshoot
        with open(self.fill_file, "wb", buffering=0) as fh:
            chunk = b"\0" * (1 << 20)
            left = wanted
            while left > 0:
                n = min(left, len(chunk))
                with contextlib.suppress(OSError):  # ENOSPC at 100%: full is what was asked
                    fh.write(chunk[:n])
                left -= n
        return self.used_percent()

    def clear(self) -> None:
        """Remove the fill file (usage back to ~0%)."""
        with contextlib.suppress(FileNotFoundError):
            self.fill_file.unlink()
