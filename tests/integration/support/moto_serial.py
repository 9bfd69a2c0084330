"""moto's server on 127.0.0.1, answering one request at a time, counting them.

moto implements DynamoDB's JSON protocol (expressions, conditions, errors) as the real service
does, but its threaded server can interleave two writes to one item; real DynamoDB applies the
writes to an item one at a time. Served serially, moto keeps that promise, so the coordination
tests see the atomicity they rely on. `GET /_counts` answers how many requests of each DynamoDB
operation (`X-Amz-Target`) were served. Prints the port it listens on, then serves until killed.
"""

import collections
import json
import sys

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

moto = DomainDispatcherApplication(create_backend_app)
counts = collections.Counter()


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/_counts":
        body = json.dumps(counts).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    counts[target.rsplit(".", 1)[-1] or "other"] += 1
    return moto(environ, start_response)


server = make_server("127.0.0.1", 0, app, threaded=False)
print(server.port, flush=True)
sys.stdout.close()
server.serve_forever()
