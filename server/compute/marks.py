"""What task code marks for a pool, read by both backends (:mod:`.pool`, :mod:`.ray`).

- :data:`RETIRE_ATTR`: the attribute ``pool.retire_worker`` sets on a task function
  (every process that runs it ends with it).
- :class:`InputFile`: a task argument that is a file the task only reads (a dataset).
  It is a ``str``, so a local worker and the task's own code see a path as before; the
  Ray backend may ship the file's bytes through the object store once and hand the task
  a node-local copy's path instead (``[compute] ship_inputs``).
"""

from __future__ import annotations

RETIRE_ATTR = "__evaldock_retire_worker__"


class InputFile(str):
    """A path argument the task reads and never writes: a backend may give the task a
    copy of the file at another path (same bytes, same file name)."""

    __slots__ = ()
