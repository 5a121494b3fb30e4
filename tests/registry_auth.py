"""A basic-authentication gate in front of the test schema registry.

Apicurio Registry authenticates only through an OpenID Connect server
(Keycloak), which the tests do not run; Confluent's registry, which
streamrec's users run, takes HTTP basic authentication. So the harness puts
this gate between the client and the real registry: a request without the
right `Authorization: Basic` header gets Confluent's answer to it (401,
{"error_code": 401, "message": "Unauthorized"}, a WWW-Authenticate header);
any other request is forwarded to the registry unchanged and its answer
returned unchanged. Loopback only; it stops with the session.

The same gate, given a certificate, serves https instead (with or without
the authentication): Apicurio's own TLS would need a restart with Quarkus
TLS settings, and what the tests check is streamrec's side of TLS (trusting
a CA file, refusing an unknown certificate, the insecure switch).
"""
import base64
import http.server
import ssl
import threading
import urllib.error
import urllib.request

USER = "streamrec"
PASSWORD = "s3cret"


class _Handler(http.server.BaseHTTPRequestHandler):
    upstream = ""  # set on the subclass made per gate
    require_auth = True

    def log_message(self, *args):
        pass

    def _authorised(self):
        want = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        return self.headers.get("Authorization") == want

    def _forward(self):
        self.requests.append((self.command, self.path))
        if self.require_auth and not self._authorised():
            body = b'{"error_code":401,"message":"Unauthorized"}'
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="SchemaRegistry"')
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else None
        request = urllib.request.Request(self.upstream + self.path, data=data,
                                         method=self.command)
        for name in ("Content-Type", "Accept"):
            if self.headers.get(name):
                request.add_header(name, self.headers[name])
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                status, headers, body = reply.status, reply.headers, reply.read()
        except urllib.error.HTTPError as error:
            status, headers, body = error.code, error.headers, error.read()
        self.send_response(status)
        self.send_header("Content-Type", headers.get("Content-Type", "application/json"))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _forward
    do_POST = _forward
    do_PUT = _forward
    do_DELETE = _forward


class AuthGate:
    """Serves http://127.0.0.1:PORT/<path> as upstream_base/<path>, behind basic auth."""

    def __init__(self, upstream_url, require_auth=True, tls=None, port=0):
        # upstream_url is the API base (http://127.0.0.1:P/apis/ccompat/v7):
        # the gate serves the same base path on its own port.
        scheme_host, _, base_path = upstream_url.partition("//")[2].partition("/")
        self.requests = []  # (method, path) of every request, in order
        handler = type("Handler", (_Handler,), {"upstream": "http://" + scheme_host,
                                                "require_auth": require_auth,
                                                "requests": self.requests})
        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.server.daemon_threads = True
        scheme = "http"
        if tls is not None:  # (certificate file, key file), PEM
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}/{base_path}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
