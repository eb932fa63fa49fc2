"""A stand-in for the OpenAI and Anthropic HTTP APIs: answers chat
completions and messages, and records every request it receives (path,
headers, body) so tests can see what Envoy let through."""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Recorder(BaseHTTPRequestHandler):
    received = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        request = json.loads(body or b"{}")
        Recorder.received.append({"path": self.path, "headers": dict(self.headers), "body": request})
        if self.path.endswith("/chat/completions"):
            answer = {
                "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": request.get("model"),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "ok"}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
            }
        else:
            answer = {"id": "msg_1", "type": "message", "role": "assistant", "model": request.get("model"),
                      "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
                      "usage": {"input_tokens": 10, "output_tokens": 1}}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def start():
    """Starts the server on a free port in a thread; returns (server, port)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


if __name__ == "__main__":
    server, port = start()
    print(port, flush=True)
    sys.stdin.read()
