"""A real WebSocket client for cfgate's loopback endpoint (used by tests/endpoint.rs).

usage: ws_chat.py URL TOKEN|- ORIGIN|- PROMPT SESSION
Prints one JSON line per message received after subscribing; on a refused handshake
prints {"refused": <HTTP status>}.
"""
import json
import sys

from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

url, token, origin, prompt, session = sys.argv[1:6]
headers = {} if token == "-" else {"Authorization": f"Bearer {token}"}
try:
    ws = connect(url, additional_headers=headers, origin=None if origin == "-" else origin,
                 open_timeout=20)
except InvalidStatus as e:
    print(json.dumps({"refused": e.response.status_code}))
    sys.exit(0)
with ws:
    ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "cfgate/subscribeChat",
                        "params": {"messages": [{"role": "user", "content": prompt}],
                                   "session": session}}))
    while True:
        msg = json.loads(ws.recv(timeout=20))
        print(json.dumps(msg), flush=True)
        if msg.get("params", {}).get("result", {}).get("kind") in ("result", "error"):
            break
        if "error" in msg:
            break
