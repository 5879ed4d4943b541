"""``diffctl study dashboard STUDY_DIR [--port P] [--host H]``: the study's Optuna journal in optuna-dashboard.

The dashboard reads ``optuna.journal`` (one Optuna study per arm, see ``LAYOUT.md``) while the study may still
be running, and never writes it: the journal is opened through a backend whose ``append_logs`` refuses, so a
dashboard action that would change a study (delete, rename, notes, tell) fails with an error instead of
appending to the file the study's driver appends to. Reading takes no lock (Optuna's file backend reads up to
the size the file had when the read began, so it never sees half a record).

The server is bound before the URL is printed (a port in use is bad input, exit 2), then serves until Ctrl-C.
``--port 0`` takes a free port; the printed URL names it.
"""

from __future__ import annotations

import errno
import logging
import signal
import socketserver
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna_dashboard import wsgi

from diffctl.errors import InputError

from .searcher import JOURNAL_FILE
from .state import read_state
from .trialdir import one_line


READ_ONLY = "is read-only here: diffctl study dashboard never changes a study"


class ReadOnlyJournal(JournalFileBackend):
    """An Optuna journal file that can be read and never appended to."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():  # the base class would create an empty one
            raise InputError(f"{path.parent}: no {JOURNAL_FILE} (no trial has been asked for yet)")
        super().__init__(str(path))

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        raise PermissionError(f"{self._file_path} {READ_ONLY}")


def read_only_storage(study_dir: Path) -> JournalStorage:
    """The study's Optuna storage, for reading only."""
    return JournalStorage(ReadOnlyJournal(study_dir / JOURNAL_FILE))


class _RefusalInOneLine(logging.Filter):
    """optuna-dashboard logs a failed request with its stack trace; a refused write needs one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if READ_ONLY in message:
            record.msg, record.args = message.splitlines()[0], ()
        return True


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # the dashboard's page asks for several things at once


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """No line per request."""


def dashboard_command(directory: str, host: str, port: int) -> None:
    """Serve the study directory's journal with optuna-dashboard until interrupted."""
    study_dir = Path(directory).absolute()
    if not study_dir.is_dir():
        raise InputError(f"{directory}: " + ("not a directory" if study_dir.exists() else "no such study directory"))
    read_state(study_dir)  # refuses a directory that is no study
    if not 0 <= port <= 65535:
        raise InputError(f"--port {port}: expected 0 to 65535 (0: any free port)")
    app = wsgi(read_only_storage(study_dir))
    logging.getLogger("optuna_dashboard._bottle_util").addFilter(_RefusalInOneLine())
    try:
        server = make_server(host, port, app, server_class=_Server, handler_class=_QuietHandler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise InputError(f"--port {port}: already in use on {host}") from None
        raise InputError(f"--host {host} --port {port}: cannot listen there ({one_line(exc)})") from None
    # Ctrl-C stops the server even where the shell that started it ignores SIGINT (a job started with `&`
    # inherits that, and Python keeps an ignored SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with server:
        print(f"optuna-dashboard of {study_dir}: http://{host}:{server.server_port}/dashboard/ (Ctrl-C stops it)",
              flush=True)
        server.serve_forever()
