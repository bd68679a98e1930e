"""The real `anthropic` SDK against herd: Claude ids resolved through the model map, answered by
a recent node (its own /v1/messages or herd's translation) and by an old node (Ollama before
0.14.0, translated by herd), streamed and not, and count_tokens.

Usage: anthropic_client.py ROUTER_URL
"""
import sys

import anthropic

base = sys.argv[1]
client = anthropic.Anthropic(base_url=base, api_key="any", max_retries=0)
messages = [{"role": "user", "content": "Why is the sky blue?"}]

for model in ["claude-sonnet-4-5", "claude-3-5-haiku-latest"]:
    m = client.messages.create(model=model, max_tokens=16, messages=messages)
    assert m.type == "message" and m.role == "assistant", m
    assert m.model == model, f"the answer names the id asked for: {m.model}"
    text = "".join(b.text for b in m.content if b.type == "text")
    assert text, m
    assert m.stop_reason in ("end_turn", "max_tokens"), m.stop_reason
    assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0, m.usage
    with client.messages.stream(model=model, max_tokens=16, messages=messages) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed and final.model == model, (streamed, final)
    assert "".join(b.text for b in final.content if b.type == "text") == streamed
    print(f"{model}: {len(text)} chars, streamed {len(streamed)} chars")

count = client.messages.count_tokens(model="claude-sonnet-4-5", messages=messages)
assert count.input_tokens > 0, count
try:
    client.messages.create(model="claude-nonexistent-1", max_tokens=8, messages=messages)
    raise AssertionError("an id nothing resolves must fail")
except anthropic.NotFoundError as e:
    assert e.status_code == 404
print("all checks passed")
