"""A simulated framebuffer: a memory-backed file laid out like /dev/fbN, with the sysfs attributes fbdev publishes,
so the real framebuffer driver opens, maps and draws on it as on a panel."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

_SHM = Path("/dev/shm")


class SimFramebuffer:
    """`device` is the framebuffer file and `sysfs` the folder that stands for /sys/class/graphics."""

    def __init__(self, width: int = 480, height: int = 320, bpp: int = 16, pad: int = 0) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="hwsim-fb-", dir=_SHM if _SHM.is_dir() else None))
        self.width, self.height, self.bpp = width, height, bpp
        self.stride = width * bpp // 8 + pad  # some drivers pad each row
        self.device = self._dir / "fb0"
        self.device.write_bytes(bytes(self.stride * height))
        self.sysfs = self._dir / "graphics"
        node = self.sysfs / "fb0"
        node.mkdir(parents=True)
        (node / "virtual_size").write_text(f"{width},{height}\n")
        (node / "bits_per_pixel").write_text(f"{bpp}\n")
        (node / "stride").write_text(f"{self.stride}\n")

    def raw(self) -> bytes:
        """The bytes the framebuffer holds now."""
        return self.device.read_bytes()

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)
