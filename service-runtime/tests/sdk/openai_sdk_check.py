"""End-to-end check of the gateway with the official OpenAI Python SDK.

Runs a small OpenAI-compatible provider on loopback, registers it with a
running faas-runtime (gateway, FAAS_AUTH=disabled) and drives the gateway
with the SDK: a chat completion, a stream with the final usage chunk, base64
embeddings (the SDK's default) and the model list.

    python -m venv .cache/sdk-venv && .cache/sdk-venv/bin/pip install openai
    FAAS_AUTH=disabled FAAS_LISTEN=127.0.0.1:18080 target/release/faas-runtime serve --service gateway --migrate &
    .cache/sdk-venv/bin/python service-runtime/tests/sdk/openai_sdk_check.py http://127.0.0.1:18080
"""

import json
import sys
import threading
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai


class Provider(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _json(self, obj):
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["content-length"])))
        if self.path.endswith("/embeddings"):
            inputs = req["input"] if isinstance(req["input"], list) else [req["input"]]
            self._json({
                "object": "list", "model": req["model"],
                "data": [{"object": "embedding", "index": i, "embedding": [0.25, -0.5, float(len(s))]}
                         for i, s in enumerate(inputs)],
                "usage": {"prompt_tokens": 3, "total_tokens": 3},
            })
            return
        base = {"id": "chatcmpl-sdk", "created": 1700000000, "model": req["model"], "system_fingerprint": None}
        if req.get("stream"):
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            chunks = [
                {"role": "assistant", "content": ""},
                {"content": "Hello"},
                {"content": " SDK"},
            ]
            for d in chunks:
                c = dict(base, object="chat.completion.chunk",
                         choices=[{"index": 0, "delta": d, "logprobs": None, "finish_reason": None}], usage=None)
                self.wfile.write(f"data: {json.dumps(c)}\n\n".encode())
            c = dict(base, object="chat.completion.chunk",
                     choices=[{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}], usage=None)
            self.wfile.write(f"data: {json.dumps(c)}\n\n".encode())
            u = dict(base, object="chat.completion.chunk", choices=[],
                     usage={"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11})
            self.wfile.write(f"data: {json.dumps(u)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            return
        self._json(dict(base, object="chat.completion", choices=[{
            "index": 0, "message": {"role": "assistant", "content": "Hello SDK", "refusal": None},
            "logprobs": None, "finish_reason": "stop"}],
            usage={"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}))


def main():
    gateway = sys.argv[1].rstrip("/")
    tenant = "sdk-" + uuid.uuid4().hex[:8]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Provider)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    provider_url = f"http://127.0.0.1:{server.server_address[1]}/v1"

    reg = urllib.request.Request(
        f"{gateway}/v1/gateway/providers", method="POST",
        headers={"content-type": "application/json", "x-tenant-id": tenant},
        data=json.dumps({"name": "sdk", "kind": "openai", "base_url": provider_url,
                         "models": ["sdk-chat", "sdk-embed"]}).encode())
    assert urllib.request.urlopen(reg).status == 201

    client = openai.OpenAI(base_url=f"{gateway}/v1", api_key="unused", default_headers={"x-tenant-id": tenant})

    r = client.chat.completions.create(model="sdk-chat", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "Hello SDK", r
    assert r.usage.total_tokens == 11, r.usage

    stream = client.chat.completions.create(
        model="sdk-chat", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True})
    text, usage = "", None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
    assert text == "Hello SDK", text
    assert usage is not None and usage.total_tokens == 11, usage

    e = client.embeddings.create(model="sdk-embed", input=["abc", "de"])
    assert [d.embedding for d in e.data] == [[0.25, -0.5, 3.0], [0.25, -0.5, 2.0]], e.data

    ids = sorted(m.id for m in client.models.list())
    assert ids == ["sdk-chat", "sdk-embed"], ids

    try:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
        raise AssertionError("expected NotFoundError")
    except openai.NotFoundError as err:
        assert "no-such-model" in str(err)

    print("openai sdk", openai.__version__, ": chat, stream with usage, base64 embeddings, models, errors: ok")


if __name__ == "__main__":
    main()
