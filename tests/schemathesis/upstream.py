# A minimal OpenAI- and Anthropic-compatible upstream on loopback for the schemathesis run.
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_POST(self):
        n = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(n) or b"{}")
        if self.path.endswith("/chat/completions"):
            if body.get("stream"):
                chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": body.get("model"),
                         "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
                out = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
                self.send_response(200); self.send_header("content-type", "text/event-stream")
            else:
                out = json.dumps({"id": "c", "object": "chat.completion", "created": 1, "model": body.get("model"),
                                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
                                  "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()
                self.send_response(200); self.send_header("content-type", "application/json")
        elif self.path.endswith("/embeddings"):
            inp = body.get("input")
            k = len(inp) if isinstance(inp, list) else 1
            out = json.dumps({"object": "list", "model": body.get("model"),
                              "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2]} for i in range(k)],
                              "usage": {"prompt_tokens": 1, "total_tokens": 1}}).encode()
            self.send_response(200); self.send_header("content-type", "application/json")
        elif self.path.endswith("/messages"):
            out = json.dumps({"id": "m", "type": "message", "role": "assistant", "model": body.get("model"),
                              "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
                              "usage": {"input_tokens": 1, "output_tokens": 1}}).encode()
            if body.get("stream"):
                ev = lambda n, d: f"event: {n}\ndata: {json.dumps(d)}\n\n"
                out = (ev("message_start", {"type": "message_start", "message": {"model": body.get("model"), "usage": {"input_tokens": 1}}})
                       + ev("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}})
                       + ev("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 1}})
                       + ev("message_stop", {"type": "message_stop"})).encode()
                self.send_response(200); self.send_header("content-type", "text/event-stream")
            else:
                self.send_response(200); self.send_header("content-type", "application/json")
        else:
            out = b"{}"; self.send_response(404)
        self.send_header("content-length", str(len(out))); self.end_headers(); self.wfile.write(out)

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
