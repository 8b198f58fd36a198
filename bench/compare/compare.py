"""Agno's Cloudflare model (and the OpenAI Python SDK under it) against the fake gateway.

Measures what benches/bench.rs measures for cfgate, so the rows can stand in one table:
warm non-streamed latency, time to the first piece and to the end of a 50-piece stream,
and the wall time of 100 concurrent 50-piece streams. Agno and the bare OpenAI SDK run in
pairs, alternating which goes first, like the Rust benchmark's two sides.

    python compare.py --fake target/release/fake-gateway --out target/agno.json [--quick]

The fake gateway binary (tests/fake-gateway) is started twice, without delay and with
1 ms between pieces; it listens on 127.0.0.1 only and exits when our pipe to it closes.
The JSON written has "rows" in the Rust benchmark's shape (`--agno PATH` merges them).
"""

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib.metadata import version

# Nothing leaves the machine: no telemetry, no proxy for 127.0.0.1.
os.environ["AGNO_TELEMETRY"] = "false"
os.environ["NO_PROXY"] = "127.0.0.1,localhost"
for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
    os.environ.pop(var, None)

import openai  # noqa: E402
from agno.models.cloudflare import Cloudflare  # noqa: E402
from agno.models.message import Message  # noqa: E402

MODEL = "workers-ai/@cf/meta/llama-3.3-70b-instruct-fp8-fast"
PIECES = 50
WARM_MSG = "hello there"
TIMEOUT = 60.0


def message(tag, n=PIECES):
    """n - 1 distinct words: the fake echoes them as exactly n pieces."""
    return " ".join(f"{tag}w{k}" for k in range(1, n))


def expected(msg):
    words = msg.split(" ")
    return ["echo: "] + [w + " " for w in words[:-1]] + [words[-1]]


def summary(values):
    v = sorted(values)
    n = len(v)
    p99 = v[max(1, min(n, -(-n * 99 // 100))) - 1]
    return {"n": n, "median": statistics.median(v), "p99": p99, "min": v[0], "max": v[-1]}


class Fake:
    """The fake-gateway binary: prints FAKE_GATEWAY_URL=..., serves until stdin closes."""

    def __init__(self, binary, delay_ms=0):
        args = [binary] + (["--chunk-delay-ms", str(delay_ms)] if delay_ms else [])
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("FAKE_GATEWAY_URL=http://127.0.0.1:"):
            self.close()
            raise SystemExit(f"fake-gateway did not start: {line!r}")
        self.base = line.split("=", 1)[1] + "/v1/acc/gw/compat"

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()


class Side:
    """One client: Agno's Cloudflare model, or the OpenAI SDK it is built on."""

    def __init__(self, name, base):
        self.name = name
        if name == "agno":
            self.model = Cloudflare(id=MODEL, api_key="x", base_url=base, timeout=TIMEOUT)
        else:
            self.sync = openai.OpenAI(api_key="x", base_url=base, timeout=TIMEOUT)
            self.aio = openai.AsyncOpenAI(api_key="x", base_url=base, timeout=TIMEOUT)

    def chat(self, msg):
        start = time.perf_counter()
        if self.name == "agno":
            content = self.model.response(messages=[Message(role="user", content=msg)]).content
        else:
            r = self.sync.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": msg}])
            content = r.choices[0].message.content
        end = time.perf_counter()
        if content != f"echo: {msg}":
            raise SystemExit(f"{self.name}: unexpected answer {content!r}")
        return (end - start) * 1e3

    def streamed(self, msg):
        start = time.perf_counter()
        first = None
        pieces = []
        if self.name == "agno":
            stream = self.model.response_stream(messages=[Message(role="user", content=msg)])
            texts = (getattr(ev, "content", None) for ev in stream)
        else:
            stream = self.sync.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": msg}], stream=True,
                stream_options={"include_usage": True})
            texts = (c.choices[0].delta.content if c.choices else None for c in stream)
        for text in texts:
            if isinstance(text, str) and text:
                if first is None:
                    first = time.perf_counter()
                pieces.append(text)
        end = time.perf_counter()
        if pieces != expected(msg):
            raise SystemExit(f"{self.name}: pieces differ ({len(pieces)} pieces: {pieces[:3]})")
        return (first - start) * 1e3, (end - start) * 1e3

    async def astreamed(self, msg):
        pieces = []
        if self.name == "agno":
            async for ev in self.model.aresponse_stream(messages=[Message(role="user", content=msg)]):
                text = getattr(ev, "content", None)
                if isinstance(text, str) and text:
                    pieces.append(text)
        else:
            stream = await self.aio.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": msg}], stream=True,
                stream_options={"include_usage": True})
            async for c in stream:
                text = c.choices[0].delta.content if c.choices else None
                if isinstance(text, str) and text:
                    pieces.append(text)
        if pieces != expected(msg):
            raise SystemExit(f"{self.name}: pieces differ in a concurrent stream")

    def concurrent(self, n, tag):
        async def run():
            start = time.perf_counter()
            await asyncio.wait_for(
                asyncio.gather(*(self.astreamed(message(f"{tag}{i}x")) for i in range(n))), TIMEOUT)
            return (time.perf_counter() - start) * 1e3
        # One event loop for all rounds, so the async client's pool is reused as in Rust.
        if not hasattr(self, "loop"):
            self.loop = asyncio.new_event_loop()
        return self.loop.run_until_complete(run())


def paired(n, sides, f):
    """f(side, i) for each side, n times, alternating the order."""
    out = {s.name: [] for s in sides}
    for i in range(n):
        order = sides if i % 2 == 0 else list(reversed(sides))
        for s in order:
            out[s.name].append(f(s, i))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fake", required=True, help="path of the fake-gateway binary")
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    q = args.quick
    n_warm, n_stream, n_paced, n_conc, warmup = (20, 5, 3, 1, 3) if q else (1000, 300, 50, 10, 50)

    label = {"agno": f"agno {version('agno')} (Python)",
             "openai": f"openai SDK {version('openai')} (Python)"}
    rows = []

    def add(figure, variant, values):
        for name, vals in values.items():
            unit = "ms"
            rows.append({"figure": figure, "variant": variant, "side": label[name], "unit": unit,
                         **summary(vals)})
            s = summary(vals)
            print(f"  {figure} [{variant}] {label[name]}: median {s['median']:.3f} "
                  f"p99 {s['p99']:.3f} min {s['min']:.3f} max {s['max']:.3f} ms (n={s['n']})",
                  flush=True)

    started = time.perf_counter()
    for delay, variant in ((0, "no delay"), (1, "1 ms/piece")):
        fake = Fake(args.fake, delay)
        sides = []
        try:
            sides = [Side("agno", fake.base), Side("openai", fake.base)]
            if delay == 0:
                paired(warmup, sides, lambda s, i: s.chat(WARM_MSG))
                add("warm non-streamed request", variant,
                    paired(n_warm, sides, lambda s, i: s.chat(WARM_MSG)))
            n = n_stream if delay == 0 else n_paced
            paired(min(warmup, n), sides, lambda s, i: s.streamed(message(f"warm{s.name}{i}")))
            both = paired(n, sides, lambda s, i: s.streamed(message(f"{s.name}{i}")))
            add("stream of 50: first piece", variant, {k: [f for f, _ in v] for k, v in both.items()})
            add("stream of 50: end", variant, {k: [e for _, e in v] for k, v in both.items()})
            paired(1, sides, lambda s, i: s.concurrent(100, f"warm{s.name}{i}r"))
            add("100 concurrent streams of 50: wall", variant,
                paired(n_conc, sides, lambda s, i: s.concurrent(100, f"{s.name}{i}r")))
        finally:
            for s in sides:
                if hasattr(s, "loop"):
                    # Let the finalizers of Agno's async generators run before closing.
                    s.loop.run_until_complete(asyncio.sleep(0.01))
                    s.loop.run_until_complete(s.loop.shutdown_asyncgens())
                    s.loop.close()
            fake.close()

    result = {
        "tool": "bench/compare/compare.py",
        "quick": q,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "seconds": time.perf_counter() - started,
        "fake": "fake-gateway binary (separate process)",
        "rows": rows,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
