"""An independent HTTP/1.1 peer for tests/test_http.c: Python's http.server on
127.0.0.1 (OS-chosen port, printed as the first stdout line), keep-alive, with
Content-Length, chunked (extensions and trailers) and close-delimited answers.
It stops when its stdin closes, so a crashed test never leaves it running."""
import http.server
import json
import sys
import threading
import urllib.parse


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def echo(self):
        u = urllib.parse.urlsplit(self.path)
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode("utf-8") if n else ""
        return json.dumps({"method": self.command, "path": u.path,
                           "query": urllib.parse.parse_qs(u.query, keep_blank_values=True),
                           "host": self.headers.get("Host"),
                           "x": self.headers.get("X-Test"),
                           "connection": self.headers.get("Connection"),
                           "body": body}, sort_keys=True, ensure_ascii=False).encode("utf-8")

    def answer(self):
        u = urllib.parse.urlsplit(self.path)
        data = self.echo()
        if u.path == "/chunked":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            pos, k = 0, 1
            while pos < len(data):
                part = data[pos:pos + k]
                self.wfile.write(b"%x;ext=%d\r\n" % (len(part), k) + part + b"\r\n")
                pos += len(part)
                k = k * 3 % 97 + 1
            self.wfile.write(b"0\r\nX-Trailer: yes\r\n\r\n")
        elif u.path == "/big":
            size = int(urllib.parse.parse_qs(u.query)["n"][0])
            blob = bytes((i * 7 + 3) & 0xFF for i in range(size))
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            pos, k = 0, 1
            while pos < size:
                part = blob[pos:pos + k]
                self.wfile.write(b"%X\r\n" % len(part) + part + b"\r\n")
                pos += len(part)
                k = (k * 5 + 11) % 70000 + 1
            self.wfile.write(b"0\r\n\r\n")
        elif u.path == "/close":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
            self.close_connection = True
        else:
            self.send_response(201 if self.command == "POST" else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        self.wfile.flush()

    do_GET = answer
    do_POST = answer
    do_HEAD = answer


server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
print(server.server_address[1], flush=True)
sys.stdin.read()
server.shutdown()
