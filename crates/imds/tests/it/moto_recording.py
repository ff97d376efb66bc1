"""moto in server mode, as `moto_server` runs it, that also prints the form body of every STS
call to stderr (one line, prefixed "STS-REQUEST "), so tests can check what imds sent to STS
(session tags, policy, external id) even where moto's model does not keep it.

Usage: python moto_recording.py HOST PORT
"""

import io
import sys
import threading

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


def recording(app):
    # The server is threaded: one line per call, written whole, so concurrent calls do not mix.
    lock = threading.Lock()

    def middleware(environ, start_response):
        if environ.get("REQUEST_METHOD") == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)
            line = "STS-REQUEST " + body.decode("utf-8", "replace") + "\n"
            with lock:
                sys.stderr.write(line)
                sys.stderr.flush()
            environ["wsgi.input"] = io.BytesIO(body)
        return app(environ, start_response)

    return middleware


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, port, recording(app), threaded=True)


if __name__ == "__main__":
    main()
