"""WSGI apps served from background threads: the demo runs the identity provider and both
relying parties in one process, and the browser tests reuse the same code."""

import socket
import threading

from werkzeug.serving import make_server

# As werkzeug's own servers listen.
LISTEN_BACKLOG = 128


class BackgroundServer:
    """Listens from construction on (OSError when the port is taken); serves from start().
    `app` may come only with start(): the port is then taken before the app is built."""

    def __init__(self, app, port: int, host: str = "127.0.0.1"):
        # Bound here, not by werkzeug, which answers a taken port with sys.exit.
        with socket.create_server((host, port), backlog=LISTEN_BACKLOG) as listener:
            bound = listener.getsockname()[1]
            self.server = make_server(host, bound, app, threaded=True, fd=listener.fileno())
        self.host = host
        self.port = self.server.port  # the real one when port was 0
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, app=None) -> "BackgroundServer":
        if app is not None:
            self.server.app = app
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.close()
        self.thread.join(timeout=5)

    def close(self) -> None:
        """Gives the port back; for a server that was never started, all that stop does."""
        self.server.server_close()


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for apps that must know their URL before serving)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]
