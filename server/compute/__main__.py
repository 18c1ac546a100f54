"""``python -m evaldock.server.compute FD``: a worker process (started by the pool)."""

import sys
from multiprocessing.connection import Connection

from .worker import main

main(Connection(int(sys.argv[1])))
