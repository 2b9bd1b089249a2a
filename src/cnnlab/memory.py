"""How much memory a refusal may count on: the one rule for every check made before a large allocation (a folder of
images decoded, a model built for training)."""

import os
from pathlib import Path


def available_memory() -> int:
    """Bytes the kernel can give: MemAvailable (free memory plus the page cache it can drop), else free pages. Free
    pages alone undercount a machine whose memory is mostly cache, and would refuse what fits."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
