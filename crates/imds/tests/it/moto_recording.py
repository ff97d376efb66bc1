"""moto in server mode, as `moto_server` runs it, that also prints the form body of every STS
call to stderr (one line, prefixed "STS-REQUEST "), so tests can check what imds sent to STS
(session tags, policy, external id) even where moto's model does not keep it.

Usage: python moto_recording.py HOST PORT
"""

import io
import sys

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


def recording(app):
    def middleware(environ, start_response):
        if environ.get("REQUEST_METHOD") == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)
            print("STS-REQUEST " + body.decode("utf-8", "replace"), file=sys.stderr, flush=True)
            environ["wsgi.input"] = io.BytesIO(body)
        return app(environ, start_response)

    return middleware


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, port, recording(app), threaded=True)


if __name__ == "__main__":
    main()
