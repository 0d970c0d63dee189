"""Cut the test suite's real Fashion-MNIST subset from the Debian package's files.

The subset is the first 4 000 training and the first 1 000 test images with their labels, written
back in IDX format (header counts updated) so the loader reads it like the full dataset.
Run once, from the repository root, after `apt-get install dataset-fashion-mnist`:

    python tests/data/cut_subset.py
"""

import gzip
import struct
import sys
from pathlib import Path

SOURCE = Path("/usr/share/datasets/fashion-mnist")
TARGET = Path(__file__).parent / "fashion-mnist"
COUNTS = {"train": 4000, "t10k": 1000}


def cut(name: str, count: int) -> None:
    raw = gzip.decompress((SOURCE / name).read_bytes())
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    item_size = 1
    for size in dims[1:]:
        item_size *= size
    header = raw[:4] + struct.pack(f">{ndim}I", count, *dims[1:])
    body = raw[4 + 4 * ndim : 4 + 4 * ndim + count * item_size]
    # mtime=0: the same input gives the same bytes, so the committed files never churn.
    (TARGET / name).write_bytes(gzip.compress(header + body, compresslevel=9, mtime=0))


if __name__ == "__main__":
    if not SOURCE.is_dir():
        sys.exit(f"{SOURCE} not found: apt-get install dataset-fashion-mnist")
    TARGET.mkdir(exist_ok=True)
    for prefix, count in COUNTS.items():
        for kind in ("images-idx3", "labels-idx1"):
            cut(f"{prefix}-{kind}-ubyte.gz", count)
