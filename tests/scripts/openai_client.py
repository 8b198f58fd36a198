"""The official `openai` Python package against cfgate's OpenAI-compatible endpoint.

Usage: openai_client.py BASE_URL KEY SCENARIO MODEL
Prints one JSON object: what the SDK handed back, as a user of the SDK would see it.
"""
import json
import sys

import openai

base_url, key, scenario, model = sys.argv[1:5]
client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=30)
out = {}

TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]},
    },
}]


def error_of(call):
    try:
        call()
    except openai.APIStatusError as e:
        return {"exception": type(e).__name__, "status": e.status_code,
                "message": str(e.message), "body": e.body,
                "retry_after": e.response.headers.get("retry-after")}
    return {"exception": None}


if scenario == "models":
    out["ids"] = [m.id for m in client.models.list()]
    first = client.models.list().data[0]
    out["first"] = first.model_dump()
    out["retrieved"] = client.models.retrieve(model).id
elif scenario == "chat":
    r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hello there"}])
    out = {"content": r.choices[0].message.content, "finish": r.choices[0].finish_reason,
           "usage": r.usage.model_dump() if r.usage else None, "object": r.object}
elif scenario == "stream":
    parts, usage, roles, finish = [], None, [], None
    with client.chat.completions.create(
            model=model, stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": [{"type": "text", "text": "stream me"}]}]) as stream:
        for chunk in stream:
            if chunk.usage:
                usage = chunk.usage.model_dump()
            for choice in chunk.choices:
                if choice.delta.role:
                    roles.append(choice.delta.role)
                if choice.delta.content:
                    parts.append(choice.delta.content)
                if choice.finish_reason:
                    finish = choice.finish_reason
    out = {"parts": parts, "joined": "".join(parts), "usage": usage, "roles": roles, "finish": finish}
elif scenario == "stream_cut":
    parts = []
    try:
        for chunk in client.chat.completions.create(
                model=model, stream=True, messages=[{"role": "user", "content": "cut me off"}]):
            for choice in chunk.choices:
                if choice.delta.content:
                    parts.append(choice.delta.content)
        out = {"parts": parts, "exception": None}
    except openai.APIError as e:
        out = {"parts": parts, "exception": type(e).__name__, "message": str(e.message)}
elif scenario == "tools":
    r = client.chat.completions.create(model=model, tools=TOOLS, tool_choice="auto",
                                       messages=[{"role": "user", "content": "weather in Paris?"}])
    call = r.choices[0].message.tool_calls[0]
    out = {"name": call.function.name, "arguments": json.loads(call.function.arguments),
           "id": call.id, "finish": r.choices[0].finish_reason}
elif scenario == "tools_stream":
    # The SDK's own assembler of streamed tool-call deltas.
    with client.chat.completions.stream(model=model, tools=TOOLS,
                                        messages=[{"role": "user", "content": "weather in Paris?"}]) as stream:
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    out = {"name": call.function.name, "arguments": json.loads(call.function.arguments),
           "id": call.id, "finish": final.choices[0].finish_reason}
elif scenario == "json":
    r = client.chat.completions.create(model=model, response_format={"type": "json_object"},
                                       messages=[{"role": "user", "content": "give json"}])
    out = {"parsed": json.loads(r.choices[0].message.content)}
elif scenario == "completion":
    r = client.completions.create(model=model, prompt="def add(a, b):\n    return ", suffix="\n\nprint(add(1, 2))\n",
                                  max_tokens=32)
    out = {"text": r.choices[0].text, "object": r.object, "finish": r.choices[0].finish_reason}
elif scenario == "completion_stream":
    parts = []
    for chunk in client.completions.create(model=model, prompt="x = ", suffix="\n", stream=True):
        for choice in chunk.choices:
            parts.append(choice.text)
    out = {"joined": "".join(parts)}
elif scenario == "error_key":
    out = error_of(lambda: client.models.list())
elif scenario == "error_request":
    out = error_of(lambda: client.chat.completions.create(model=model, messages=[]))
elif scenario == "error_chat":
    out = error_of(lambda: client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}]))
elif scenario == "error_chat_default_retries":
    # The SDK as most tools build it: its own retries on (2 by default, for 5xx among others).
    retrying = openai.OpenAI(base_url=base_url, api_key=key, timeout=30)
    out = error_of(lambda: retrying.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}]))
elif scenario == "close_mid_stream":
    stream = client.chat.completions.create(model=model, stream=True,
                                            messages=[{"role": "user", "content": "hold"}])
    first = next(iter(stream))
    out = {"first": first.choices[0].delta.content}
    stream.close()
    client.close()
    print(json.dumps(out), flush=True)
    # Stay alive until the test has seen the upstream request dropped (stdin closes).
    sys.stdin.read()
    sys.exit(0)
else:
    sys.exit(f"unknown scenario {scenario}")
print(json.dumps(out))
