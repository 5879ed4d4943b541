"""``diffctl study dashboard STUDY_DIR [--port P] [--host H]``: the study's Optuna journal in optuna-dashboard.

The dashboard reads ``optuna.journal`` (one Optuna study per arm, see ``LAYOUT.md``) while the study may still
be running, and never writes it. A request that would change a study (create, delete, rename, notes, tell,
user attributes, preferences, artifacts: every POST, PUT, PATCH and DELETE but the LLM queries, which only read)
is refused before optuna-dashboard sees it: 403 Forbidden, a JSON ``reason`` the page shows, and one log line on
stderr. Behind that, the journal is opened through a backend whose ``append_logs`` refuses, so a write that got
past the refusal fails instead of appending to the file the study's driver appends to. Reading takes no lock
(Optuna's file backend reads up to the size the file had when the read began, so it never sees half a record).

The server is bound before the URL is printed (a port in use is bad input, exit 2), then serves until Ctrl-C.
``--port 0`` takes a free port; the printed URL names it.
"""

from __future__ import annotations

import errno
import json
import logging
import signal
import socketserver
from pathlib import Path
from typing import Any, Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna_dashboard import wsgi

from diffctl.errors import InputError, one_line

from .journal import JOURNAL_FILE
from .protocol import SPEC_FILE
from .state import read_state


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


READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# optuna-dashboard's LLM queries POST a question and change no study (without an LLM provider they answer 400).
READS_BY_POST = ("/api/llm/",)
MAX_DRAINED = 1 << 20  # bytes of a refused request's body read and dropped (the page sends small JSON)

_log = logging.getLogger(__name__)


def refuse_writes(app: Callable, journal: Path) -> Callable:
    """Wrap a WSGI app so that every request that could change a study is answered 403 with a JSON ``reason``
    and one warning line, without reaching ``app``; a method that writes nothing passes, as do the LLM queries."""

    def read_only_app(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        path = environ.get("PATH_INFO", "")
        if method in READ_METHODS or (method == "POST" and path.startswith(READS_BY_POST)):
            return app(environ, start_response)
        _drain(environ)
        reason = f"{journal} {READ_ONLY}"
        _log.warning("refused %s %s: %s", method, path, reason)
        body = json.dumps({"reason": reason}).encode()
        start_response("403 Forbidden", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return read_only_app


def _drain(environ: dict[str, Any]) -> None:
    """Read a refused request's body: closing a socket with unread input resets the connection, which can lose
    the answer before the client reads it."""
    try:
        length = min(int(environ.get("CONTENT_LENGTH") or 0), MAX_DRAINED)
    except ValueError:
        return
    stream = environ.get("wsgi.input")
    while length > 0 and stream is not None:
        chunk = stream.read(min(length, 65536))
        if not chunk:
            break
        length -= len(chunk)


class _RefusalInOneLine(logging.Filter):
    """optuna-dashboard logs a failed request with its stack trace; a write that got past :func:`refuse_writes`
    and was refused by the journal needs one line."""

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
    if not (study_dir / JOURNAL_FILE).is_file() or not (study_dir / SPEC_FILE).is_file():
        read_state(study_dir)  # refuses a directory that is no study (a published one keeps its journal and spec)
    if not 0 <= port <= 65535:
        raise InputError(f"--port {port}: expected 0 to 65535 (0: any free port)")
    app = refuse_writes(wsgi(read_only_storage(study_dir)), study_dir / JOURNAL_FILE)
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
