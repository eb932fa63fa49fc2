"""A stand-in for the OpenAI (chat completions, Responses) and Anthropic
(messages) HTTP APIs, faithful to their documented wire formats: JSON
answers and server-sent event streams with usage (OpenAI's final usage
chunk only when `stream_options.include_usage` asks for it). It records
every request it receives (path, headers, body) so tests can see what Envoy
let through and in what form.

Tests steer it with the `x-fake` request header: `error-500` answers an
error, `cut` streams part of an answer and drops the connection, `hold`
waits for `Recorder.release` before answering."""

import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# What every answer reports: fixed, so tests can add it up exactly.
PROMPT_TOKENS = 10
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon"]


class Recorder(BaseHTTPRequestHandler):
    received = []
    release = threading.Event()
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        # Each event is its own small write: no Nagle delay between them.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        request = json.loads(body or b"{}")
        Recorder.received.append({"path": self.path, "headers": dict(self.headers), "body": request})
        behaviour = self.headers.get("x-fake", "")
        if behaviour == "hold":
            Recorder.release.wait(timeout=60)
        if behaviour == "error-500":
            return self.send_json(500, {"error": {"type": "server_error", "message": "the model is overloaded"}})
        limit = next((request[f] for f in ("max_completion_tokens", "max_tokens", "max_output_tokens")
                      if isinstance(request.get(f), int)), None)
        words = WORDS[:limit] if limit is not None else WORDS
        if request.get("stream"):
            return self.stream(request, words, cut=behaviour == "cut")
        self.send_json(200, answer(self.path, request, words))

    def send_json(self, status, value):
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def stream(self, request, words, cut):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        events = stream_events(self.path, request, words)
        if cut:
            events = events[: len(events) // 2]
        for event in events:
            data = event.encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
        if cut:
            # No terminating chunk: the connection just drops.
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(b"0\r\n\r\n")


def answer(path, request, words):
    """The non-streamed answer: chat completions and messages say "ok" (one
    output token), the Responses API says the words."""
    model = request.get("model")
    if path.endswith("/chat/completions"):
        return {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": model,
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}],
                "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": 1, "total_tokens": PROMPT_TOKENS + 1}}
    if path.endswith("/responses"):
        return {"id": "resp_1", "object": "response", "created_at": 0, "status": "completed", "model": model,
                "output": [{"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                            "content": [{"type": "output_text", "text": " ".join(words), "annotations": []}]}],
                "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": len(words),
                          "total_tokens": PROMPT_TOKENS + len(words)}}
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": 1}}


def sse(data, event=None):
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n"


def stream_events(path, request, words):
    model = request.get("model")
    if path.endswith("/chat/completions"):
        include_usage = (request.get("stream_options") or {}).get("include_usage") is True
        base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": model}
        extra = {"usage": None} if include_usage else {}
        events = [sse({**base, **extra, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                     "finish_reason": None}]})]
        events += [sse({**base, **extra, "choices": [{"index": 0, "delta": {"content": w + " "},
                                                      "finish_reason": None}]}) for w in words]
        events.append(sse({**base, **extra, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
        if include_usage:
            events.append(sse({**base, "choices": [], "usage": {
                "prompt_tokens": PROMPT_TOKENS, "completion_tokens": len(words),
                "total_tokens": PROMPT_TOKENS + len(words)}}))
        events.append("data: [DONE]\n\n")
        return events
    if path.endswith("/responses"):
        events = [sse({"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0,
                       "content_index": 0, "delta": w + " "}, "response.output_text.delta") for w in words]
        events.append(sse({"type": "response.completed", "response": answer(path, request, words)},
                          "response.completed"))
        return events
    events = [sse({"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": 1}}}, "message_start"),
        sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            "content_block_start")]
    events += [sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w + " "}},
                   "content_block_delta") for w in words]
    events += [sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
               sse({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": len(words)}}, "message_delta"),
               sse({"type": "message_stop"}, "message_stop")]
    return events


class Server(ThreadingHTTPServer):
    # Tests hold dozens of answers open at once.
    request_queue_size = 256


def start():
    """Starts the server on a free port in a thread; returns (server, port)."""
    server = Server(("127.0.0.1", 0), Recorder)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


if __name__ == "__main__":
    server, port = start()
    print(port, flush=True)
    sys.stdin.read()
