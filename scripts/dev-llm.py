#!/usr/bin/env python3
"""A local stand-in for a hosted LLM provider, for development only (`make run`).

It speaks the part of the OpenAI protocol the gateway uses — POST /v1/chat/completions, plain
and streamed (`stream: true`, server-sent events, with the usage chunk when
`stream_options.include_usage` asks for it) and GET /v1/models — and answers
deterministically, so a local run shows an agent's tool-calling loop end to end without a
network or an API key:

  * when the request offers tools and no tool has answered yet, it calls one: the builtin
    `current_time` when offered, else the first tool, with arguments that fill every required
    field of the tool's JSON Schema;
  * once a tool result is among the messages, it answers with text that quotes that result;
  * when the request asks for structured output named `agent` (the prompt generator's
    `response_format`), it answers with an agent for the last user message: a name from its
    first words, instructions that repeat it, and the builtin current-time tool;
  * when it asks for other structured output, it answers with a value of the schema;
  * otherwise it answers with text that quotes the last user message.

It is not a model and knows nothing. It listens on a loopback address only and never logs a
header or a message. Python 3.11 standard library only.

  scripts/dev-llm.py [--host 127.0.0.2] [--port 18091] [--model gpt-4o-mini ...]
"""

import argparse
import ipaddress
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OWNER = "local-stand-in"


def text_of(content):
    """The text of a message's content: a string, or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def tokens(text):
    """A rough, deterministic token count: one per four characters, at least one."""
    return max(1, len(text) // 4)


def value_for(schema):
    """A value that satisfies a (simple) JSON Schema: its enum's first value or default, else
    a placeholder of its type, with the required fields of an object filled in."""
    if not isinstance(schema, dict):
        return "example"
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object" or "properties" in schema:
        return arguments(schema)
    if kind == "array":
        return []
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return schema.get("minimum", 1)
    if kind == "boolean":
        return False
    return "example"


def arguments(schema):
    """Arguments that fill every required field of an object schema."""
    if not isinstance(schema, dict):
        return {}
    props = schema.get("properties") or {}
    required = [r for r in schema.get("required") or [] if isinstance(r, str)]
    return {name: value_for(props.get(name, {"type": "string"})) for name in required}


def agent_for(description, models):
    """An agent definition for `description`, as the prompt generator asks for one."""
    words = [w for w in "".join(c.lower() if c.isalnum() else " " for c in description).split()]
    name = "-".join(words[:4])[:63].strip("-") or "assistant"
    return {
        "name": name,
        "spec": {
            "model": {"provider": "openai", "name": models[0]},
            "systemPrompt": f"You are an assistant for this purpose: {description.strip()}",
            "tools": [{"name": "current_time", "type": "builtin",
                       "description": "The current date and time.",
                       "builtin": {"name": "current-time"}}],
            "maxIterations": 6,
        },
    }


def plan(body, models):
    """What to answer: ("call", name, arguments JSON) or ("text", text)."""
    messages = body.get("messages") or []
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        users = [m for m in messages if m.get("role") == "user"]
        said = text_of(users[0].get("content")) if users else ""
        spec = fmt.get("json_schema") or {}
        value = agent_for(said, models) if spec.get("name") == "agent" else value_for(spec.get("schema"))
        return ("text", json.dumps(value))
    tools = [t.get("function") or {} for t in body.get("tools") or [] if t.get("type") == "function"]
    results = [m for m in messages if m.get("role") == "tool"]
    if results:
        last = results[-1]
        name = "the tool"
        for m in messages:
            for call in m.get("tool_calls") or []:
                if call.get("id") == last.get("tool_call_id"):
                    name = "the " + call.get("function", {}).get("name", "") + " tool"
        return ("text", f"According to {name}: {text_of(last.get('content'))}")
    if tools:
        tool = next((t for t in tools if t.get("name") == "current_time"), tools[0])
        args = arguments(tool.get("parameters") or {})
        return ("call", tool.get("name", ""), json.dumps(args, separators=(",", ":")))
    users = [m for m in messages if m.get("role") == "user"]
    said = text_of(users[-1].get("content")) if users else ""
    return ("text", f"(local stand-in model) You said: {said}")


def usage(body, answer):
    prompt = sum(tokens(text_of(m.get("content"))) for m in body.get("messages") or [])
    completion = tokens(answer)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


class Handler(BaseHTTPRequestHandler):
    server_version = "dev-llm"
    models = ["gpt-4o-mini"]

    def log_message(self, fmt, *args):
        pass

    def note(self, what):
        sys.stderr.write(f"[dev-llm] {self.command} {self.path.split('?')[0]}: {what}\n")

    def send(self, status, payload, content_type="application/json"):
        out = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def error(self, status, message, code):
        self.note(f"{status} {code}")
        self.send(status, {"error": {"message": message, "type": "invalid_request_error",
                                     "param": None, "code": code}})

    def do_GET(self):
        if self.path.split("?")[0].rstrip("/") == "/v1/models":
            self.note("models")
            return self.send(200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": OWNER} for m in self.models]})
        self.error(404, "no such route", "not_found")

    def do_POST(self):
        if self.path.split("?")[0].rstrip("/") != "/v1/chat/completions":
            return self.error(404, "no such route", "not_found")
        try:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
        except (ValueError, json.JSONDecodeError):
            return self.error(400, "the body is not JSON", "invalid_json")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return self.error(400, "messages: required, a list", "invalid_request")
        model = body.get("model")
        if model not in self.models:
            return self.error(404, f"the model {model!r} does not exist", "model_not_found")
        answer = plan(body, self.models)
        if answer[0] == "call":
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": f"call_{len(body['messages'])}", "type": "function",
                 "function": {"name": answer[1], "arguments": answer[2]}}]}
            finish, written = "tool_calls", answer[1] + answer[2]
            self.note(f"calls tool {answer[1]}")
        else:
            message = {"role": "assistant", "content": answer[1]}
            finish, written = "stop", answer[1]
            self.note("answers with text")
        used = usage(body, written)
        ident, created = f"chatcmpl-local-{len(body['messages'])}", int(time.time())
        if body.get("stream"):
            return self.stream(body, ident, created, model, message, finish, used)
        self.send(200, {"id": ident, "object": "chat.completion", "created": created,
                        "model": model, "system_fingerprint": None,
                        "choices": [{"index": 0, "message": message, "logprobs": None,
                                     "finish_reason": finish}],
                        "usage": used})

    def stream(self, body, ident, created, model, message, finish, used):
        include_usage = (body.get("stream_options") or {}).get("include_usage") is True

        def chunk(delta, finish_reason=None):
            c = {"id": ident, "object": "chat.completion.chunk", "created": created,
                 "model": model, "system_fingerprint": None,
                 "choices": [{"index": 0, "delta": delta, "logprobs": None,
                              "finish_reason": finish_reason}]}
            if include_usage:
                c["usage"] = None
            return f"data: {json.dumps(c)}\n\n"

        events = [chunk({"role": "assistant", "content": ""})]
        if message.get("tool_calls"):
            call = message["tool_calls"][0]
            args = call["function"]["arguments"]
            half = len(args) // 2
            events.append(chunk({"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                                 "function": {"name": call["function"]["name"],
                                                              "arguments": args[:half]}}]}))
            events.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[half:]}}]}))
        else:
            words = message["content"].split(" ")
            for i, word in enumerate(words):
                events.append(chunk({"content": word if i == 0 else " " + word}))
        events.append(chunk({}, finish))
        if include_usage:
            events.append("data: " + json.dumps({
                "id": ident, "object": "chat.completion.chunk", "created": created,
                "model": model, "system_fingerprint": None, "choices": [], "usage": used}) + "\n\n")
        events.append("data: [DONE]\n\n")
        self.send(200, "".join(events).encode(), "text/event-stream")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.2", help="a loopback address (default 127.0.0.2)")
    parser.add_argument("--port", type=int, default=18091)
    parser.add_argument("--model", action="append", help="a model it answers for (repeatable; default gpt-4o-mini)")
    args = parser.parse_args()
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        parser.error(f"--host {args.host}: only a loopback address; this is a local stand-in")
    Handler.models = args.model or Handler.models
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    sys.stderr.write(f"[dev-llm] local stand-in for an OpenAI-compatible provider on "
                     f"http://{args.host}:{args.port}/v1 (models: {', '.join(Handler.models)})\n")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
