"""The real `openai` SDK's Responses API (what Codex speaks) against herd: a plain answer,
streamed with the SDK's own event accumulator and raw, a function-call round trip (streamed and
not), instructions and developer messages, and the errors: a stateful request (400), an unknown
model (404), and a node that dies mid-answer (response.failed, never response.completed).

Usage: responses_client.py ROUTER_URL FAKE_URL
"""
import json
import sys
import urllib.request

import openai

base, fake = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base + "/v1", api_key="any", max_retries=0)
MODEL = "llama3.1:8b"
THINKER = "qwen3:8b"


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok:", what)


# A plain answer.
r = client.responses.create(model=MODEL, input="Why is the sky blue?", max_output_tokens=16)
check(r.object == "response" and r.id.startswith("resp_") and r.model == MODEL, "a response object")
check(r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens", "the budget ran out")
check(r.output_text, f"text: {r.output_text[:40]!r}")
check(r.usage.input_tokens > 0 and r.usage.output_tokens > 0, "usage")
check(r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens, "total tokens")
check(r.max_output_tokens == 16, "the request is echoed")

# Streamed, through the SDK's accumulator (which checks the event order strictly).
with client.responses.stream(model=MODEL, input="Why is the sky blue?", max_output_tokens=16,
                             instructions="Answer briefly.") as stream:
    seen = [e for e in stream]
deltas = [e.delta for e in seen if e.type == "response.output_text.delta"]
check(deltas and seen[-1].type in ("response.completed", "response.incomplete"), "streamed text deltas")
check(seen[-1].response.output_text == "".join(deltas), "the last event holds the streamed text")

# Raw events: created first, sequence numbers in order, one terminal event, text as streamed.
events = list(client.responses.create(model=MODEL, input=[
    {"role": "developer", "content": "be brief"},
    {"role": "user", "content": [{"type": "input_text", "text": "hello"}]},
], stream=True))
types = [e.type for e in events]
check(types[0] == "response.created" and types[1] == "response.in_progress", f"lifecycle first: {types[:2]}")
check([e.sequence_number for e in events] == list(range(len(events))), "sequence numbers count up")
check(types[-1] == "response.completed" and types.count("response.completed") == 1, f"completed last: {types[-3:]}")
text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
check(text and events[-1].response.output_text == text, "the final response holds the streamed text")
with client.responses.stream(model=MODEL, input="hello") as stream:
    for _ in stream:
        pass
    final = stream.get_final_response()
check(final.status == "completed" and final.output_text, "get_final_response")

# Reasoning: a thinking model's thoughts come back as a reasoning item's summary.
r = client.responses.create(model=THINKER, input="why?", reasoning={"effort": "low"})
kinds = [o.type for o in r.output]
check(kinds == ["reasoning", "message"], f"reasoning then the answer: {kinds}")
check(r.output[0].summary[0].text and r.output_text, "reasoning summary text")
check(r.reasoning.effort == "low", "the reasoning setting is echoed")

# A function call round trip.
tools = [{"type": "function", "name": "get_weather", "description": "weather for a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
conversation = [{"role": "user", "content": "What is the weather in Paris?"}]
r = client.responses.create(model=MODEL, input=conversation, tools=tools)
calls = [o for o in r.output if o.type == "function_call"]
check(calls and calls[0].name == "get_weather" and calls[0].call_id, f"a function call: {r.output}")
check("city" in json.loads(calls[0].arguments), "arguments are a JSON string")
conversation += [o.model_dump(exclude_none=True) for o in r.output]
conversation.append({"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny, 21 C"})
r2 = client.responses.create(model=MODEL, input=conversation, tools=tools, tool_choice="none")
check(r2.status in ("completed", "incomplete") and r2.output_text, "an answer after the tool's output")

with client.responses.stream(model=MODEL, input=conversation[:1], tools=tools) as stream:
    argument_events = [e for e in stream if e.type == "response.function_call_arguments.done"]
    final = stream.get_final_response()
check(argument_events and argument_events[0].name == "get_weather", "streamed call arguments")
check([o.type for o in final.output if o.type == "function_call"] == ["function_call"], "streamed call item")

# Errors.
try:
    client.responses.create(model=MODEL, input="again", previous_response_id=r.id)
    raise AssertionError("a stateful request must fail")
except openai.BadRequestError as e:
    check(e.status_code == 400 and "stateless" in str(e), "previous_response_id -> 400")
try:
    client.responses.create(model="no-such-model:1b", input="hi")
    raise AssertionError("an unknown model must fail")
except openai.NotFoundError as e:
    check(e.status_code == 404, "unknown model -> 404")

# The node dies mid-answer: response.failed ends the stream, never response.completed.
req = urllib.request.Request(fake + "/_fake/fault", method="POST", headers={"content-type": "application/json"},
                             data=json.dumps({"kind": "die_mid_stream", "after_chunks": 3, "count": 1}).encode())
urllib.request.urlopen(req, timeout=5).read()
events = []
try:
    for e in client.responses.create(model=MODEL, input="tell me a long story", stream=True):
        events.append(e)
except openai.APIError:
    pass
types = [e.type for e in events]
check(types and types[-1] == "response.failed" and "response.completed" not in types, f"failed: {types[-3:]}")
check(events[-1].response.status == "failed" and events[-1].response.error.message, "the failure says why")
print("all checks passed")
