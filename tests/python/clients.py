"""Real clients against the router (herd or herd-lite; tests/tests/conformance.rs runs it for
both): the `ollama` (0.6.3) and `openai` (3.57.0) Python packages, used exactly as a user would,
pointed at the router instead of Ollama.

Usage: clients.py ROUTER_URL NAME=FAKE_URL [NAME=FAKE_URL ...]   (fakes take faults on /_fake/fault)
       clients.py --keys ROUTER_URL                     (a router started with --api-keys good-key)
Exits non-zero on the first failed check.
"""
import base64
import json
import sys
import urllib.request

import ollama
import openai

PNG_1PX = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")).decode()


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok -", what)


def fault(fake, body):
    req = urllib.request.Request(fake + "/_fake/fault", data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json"})
    urllib.request.urlopen(req).read()


def ollama_checks(url, fakes):
    c = ollama.Client(host=url)
    r = c.chat(model="qwen3:8b", messages=[{"role": "user", "content": "hello"}])
    check(r.message.role == "assistant" and len(r.message.content) > 0, "ollama chat")
    check(r.done and r.eval_count > 0 and r.prompt_eval_count > 0, "ollama chat counts")
    parts = list(c.chat(model="qwen3:8b", messages=[{"role": "user", "content": "hi"}], stream=True))
    check(len(parts) > 2 and parts[-1].done and not parts[0].done, "ollama chat stream")
    g = c.generate(model="qwen3:8b", prompt="why is the sky blue")
    check(len(g.response) > 0 and g.done, "ollama generate")
    gs = list(c.generate(model="qwen3:8b", prompt="why", stream=True))
    check(gs[-1].done and "".join(p.response for p in gs) != "", "ollama generate stream")
    e = c.embed(model="nomic-embed-text", input=["a", "b"])
    check(len(e.embeddings) == 2 and len(e.embeddings[0]) > 0, "ollama embed")
    le = c.embeddings(model="nomic-embed-text", prompt="a")
    check(len(le.embedding) > 0, "ollama legacy embeddings")
    names = [m.model for m in c.list().models]
    check("qwen3:8b" in names and "nomic-embed-text:latest" in names, "ollama list: %s" % names)
    check(len(c.ps().models) >= 1, "ollama ps")
    s = c.show("qwen3:8b")
    check(s.modelfile is not None or s.details is not None, "ollama show")
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "weather",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    t = c.chat(model="qwen3:8b", messages=[{"role": "user", "content": "weather in Paris?"}], tools=tools)
    check(t.message.tool_calls and t.message.tool_calls[0].function.name == "get_weather", "ollama tool call")
    v = c.chat(model="qwen3:8b", messages=[{"role": "user", "content": "what is this?", "images": [PNG_1PX]}])
    check(len(v.message.content) > 0, "ollama vision request with an image")
    try:
        c.chat(model="nope:1b", messages=[{"role": "user", "content": "x"}])
        check(False, "unknown model raises")
    except ollama.ResponseError as err:
        check(err.status_code == 404, "ollama unknown model -> 404 ResponseError")
    # The node herd would pick answers 500 once: herd retries on another node, unseen by the client.
    best = json.load(urllib.request.urlopen(url + "/fleet/explain?model=qwen3:8b"))["best"]
    fault(fakes[best], {"kind": "status", "code": 500, "count": 1})
    raw = c._client.post("/api/chat", json={"model": "qwen3:8b", "stream": False,
                                             "messages": [{"role": "user", "content": "retry me"}]})
    check(raw.status_code == 200 and raw.headers["x-herd-attempts"] == "2"
          and raw.headers["x-herd-node"] != best, "a node's 500 is retried on another node (headers right)")
    r = c.chat(model="qwen3:8b", messages=[{"role": "user", "content": "retry me"}])
    check(r.done, "ollama chat after the retry")
    # Death mid-stream: the client gets an error, never a silent short answer.
    for f in fakes.values():
        fault(f, {"kind": "die_mid_stream", "after_chunks": 2, "count": 1})
    try:
        list(c.chat(model="qwen3:8b", messages=[{"role": "user", "content": "x"}], stream=True))
        check(False, "mid-stream death raises")
    except ollama.ResponseError as err:
        check("stream" in str(err) or "connection" in str(err) or "node" in str(err), "ollama mid-stream death -> error")
    for f in fakes.values():
        fault(f, {"kind": "clear"})


def openai_checks(url):
    c = openai.OpenAI(base_url=url + "/v1", api_key="unused")
    r = c.chat.completions.create(model="qwen3:8b", messages=[{"role": "user", "content": "hello"}],
                                  temperature=0.2, top_p=0.9, seed=1, stop=["zzz"], max_completion_tokens=40)
    check(r.choices[0].message.content and r.usage.completion_tokens > 0, "openai chat")
    chunks = list(c.chat.completions.create(model="qwen3:8b", messages=[{"role": "user", "content": "hi"}],
                                            stream=True, stream_options={"include_usage": True}))
    check(chunks[0].choices[0].delta.role == "assistant", "openai stream: role first")
    check(len({ch.id for ch in chunks}) == 1, "openai stream: one id")
    check(chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0, "openai stream: usage chunk")
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    check(len(text) > 0, "openai stream: content")
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    t = c.chat.completions.create(model="qwen3:8b", messages=[{"role": "user", "content": "weather?"}], tools=tools)
    call = t.choices[0].message.tool_calls[0]
    check(t.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
          and "city" in json.loads(call.function.arguments), "openai tool call")
    ts = list(c.chat.completions.create(model="qwen3:8b", messages=[{"role": "user", "content": "weather?"}],
                                        tools=tools, stream=True))
    deltas = [tc for ch in ts if ch.choices for tc in (ch.choices[0].delta.tool_calls or [])]
    check(deltas and deltas[0].index == 0 and deltas[0].function.name == "get_weather", "openai streamed tool call")
    comp = c.completions.create(model="qwen3:8b", prompt="once upon a time", max_tokens=20)
    check(len(comp.choices[0].text) > 0, "openai legacy completions")
    e = c.embeddings.create(model="nomic-embed-text", input=["a", "b"])  # SDK default: base64
    check(len(e.data) == 2 and len(e.data[0].embedding) > 0, "openai embeddings (base64)")
    ef = c.embeddings.create(model="nomic-embed-text", input="a", encoding_format="float")
    check(len(ef.data[0].embedding) > 0, "openai embeddings (float)")
    ids = [m.id for m in c.models.list()]
    check("qwen3:8b" in ids, "openai models list")
    check(c.models.retrieve("qwen3:8b").id == "qwen3:8b", "openai model retrieve")
    try:
        c.chat.completions.create(model="nope:1b", messages=[{"role": "user", "content": "x"}])
        check(False, "unknown model raises")
    except openai.NotFoundError:
        check(True, "openai unknown model -> NotFoundError")
    fb = c.chat.completions.with_raw_response.create(
        model="llama3.3:70b", messages=[{"role": "user", "content": "x"}],
        extra_body={"fallback_models": ["qwen3:8b"]})
    check(fb.headers.get("x-herd-model") == "qwen3:8b" and fb.parse().choices[0].message.content,
          "openai fallback_models through extra_body")
    v = c.chat.completions.create(model="qwen3:8b", messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG_1PX}}]}])
    check(v.choices[0].message.content, "openai vision request with a data-URL image")


def refuse_check(url, fakes):
    """Last, because a refusing fake cannot be told to stop refusing over HTTP."""
    best = json.load(urllib.request.urlopen(url + "/fleet/explain?model=qwen3:8b"))["best"]
    fault(fakes[best], {"kind": "refuse"})
    c = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    r = c.chat.completions.with_raw_response.create(model="qwen3:8b", messages=[{"role": "user", "content": "x"}])
    check(r.headers.get("x-herd-node") != best and r.parse().choices[0].message.content,
          "a refused connection is retried on another node")
    o = ollama.Client(host=url)
    check(o.chat(model="qwen3:8b", messages=[{"role": "user", "content": "x"}]).done, "and the next request is served")


def key_checks(url):
    c = openai.OpenAI(base_url=url + "/v1", api_key="wrong-key", max_retries=0)
    try:
        c.chat.completions.create(model="qwen3:8b", messages=[{"role": "user", "content": "x"}])
        check(False, "wrong key raises")
    except openai.AuthenticationError:
        check(True, "openai wrong API key -> AuthenticationError")
    good = openai.OpenAI(base_url=url + "/v1", api_key="good-key")
    r = good.chat.completions.create(model="qwen3:8b", messages=[{"role": "user", "content": "x"}])
    check(r.choices[0].message.content, "openai with the right key")
    o = ollama.Client(host=url, headers={"Authorization": "Bearer good-key"})
    check(o.chat(model="qwen3:8b", messages=[{"role": "user", "content": "x"}]).done, "ollama with the right key")
    try:
        ollama.Client(host=url).chat(model="qwen3:8b", messages=[{"role": "user", "content": "x"}])
        check(False, "no key raises")
    except ollama.ResponseError as err:
        check(err.status_code == 401, "ollama without a key -> 401")
    try:
        o.pull("qwen3:8b")
        check(False, "pull without the admin key raises")
    except ollama.ResponseError as err:
        check(err.status_code == 403, "ollama pull with an API key but not the admin key -> 403")


if __name__ == "__main__":
    if sys.argv[1] == "--keys":
        key_checks(sys.argv[2])
    else:
        ollama_checks(sys.argv[1], dict(a.split("=", 1) for a in sys.argv[2:]))
        openai_checks(sys.argv[1])
        refuse_check(sys.argv[1], dict(a.split("=", 1) for a in sys.argv[2:]))
    print("all checks passed")
