"""WSGI apps served from background threads: the demo runs the identity provider and both
relying parties in one process, and the browser tests reuse the same code."""

import threading

from werkzeug.serving import make_server


class BackgroundServer:
    def __init__(self, app, port: int, host: str = "127.0.0.1"):
        self.server = make_server(host, port, app, threaded=True)
        self.host = host
        self.port = self.server.server_port  # the real one when port was 0
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "BackgroundServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for apps that must know their URL before serving)."""
    import socket

    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]
