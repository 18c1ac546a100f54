"""An (N, D) embedding matrix in a file: written a chunk at a time through a memory map of
that chunk alone, read back in blocks. Either way the process holds one chunk or block.

A map of the whole file would do, but its touched pages stay resident and count in the
process's RSS (a 1,000,000 x 512 float32 matrix is 2 GiB), so each write maps only its
chunk's rows and unmaps them once flushed, and reads are plain ``pread``s into fresh
arrays. A chunk written and flushed survives a SIGKILL of the process: callers record
the rows done after :meth:`VectorFile.write` returns and resume from there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np


class VectorFile:
    """``n`` rows of ``dim`` values of ``dtype`` (float32 or float16) at ``path``."""

    def __init__(self, path: Path, n: int, dim: int, dtype: str = "float32") -> None:
        self.path = path
        self.n = n
        self.dim = dim
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float16)):
            raise ValueError(f"dtype must be float32 or float16, got {dtype}")
        self.row_bytes = dim * self.dtype.itemsize
        size = n * self.row_bytes
        if not path.exists() or path.stat().st_size != size:
            with path.open("wb") as fh:
                fh.truncate(size)  # sparse: disk is used as rows are written

    def write(self, start: int, vectors: np.ndarray) -> None:
        """Rows ``start .. start + len(vectors)``, flushed to disk before returning."""
        rows = vectors.shape[0]
        if rows == 0:
            return
        if vectors.shape[1] != self.dim or start < 0 or start + rows > self.n:
            raise ValueError(f"rows {start}..{start + rows} of {vectors.shape} do not fit")
        mapped = np.memmap(
            self.path,
            dtype=self.dtype,
            mode="r+",
            offset=start * self.row_bytes,
            shape=(rows, self.dim),
        )
        mapped[:] = vectors
        mapped.flush()  # msync: the rows are on disk before the caller records them done
        del mapped

    def blocks(self, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, float32 (rows, dim) array) for each block of ``rows`` rows."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for start in range(0, self.n, rows):
                count = min(rows, self.n - start)
                raw = os.pread(fd, count * self.row_bytes, start * self.row_bytes)
                block = np.frombuffer(raw, dtype=self.dtype).reshape(count, self.dim)
                yield start, block.astype(np.float32)
                del raw, block
        finally:
            os.close(fd)
