#!/usr/bin/env python3
"""Simulated agents for end2end/cluster.sh, and the check that nothing acknowledged is lost.

`run`: AGENTS agents, each uploading every INTERVAL seconds for DURATION seconds through
the proxy, on a new TCP connection per upload (as the Rust agent 0.5 does, so the proxy's
round-robin spreads uploads over the servers). Each upload is real: the folded body a
released agent sent (end2end/agents or /work/shared/agents `rust-v05-folded`, cycled), gzip,
`POST /ingest?name=e2e.cpu{…,pod=agent-N}&from&until&format=folded&sampleRate=100`, one
series per agent, plus one line `kiln_e2e;agent_N;upload_M 1` unique to the upload. A failed
attempt (no answer, not 200) is retried with the same Idempotency-Key through the proxy
(the next server), up to 10 attempts, as `kiln upload` retries. Meanwhile a merge of
everything is asked through the proxy every 2 s, and freshness is probed: an upload on one
live server (direct) until another live server's query shows it.

Writes into --out: attempts (status seconds epoch), acked and maybe (unique lines of uploads
acknowledged / never acknowledged), queries (status seconds), freshness (milliseconds).

`verify`: asks a server for the merge until every acknowledged upload's line is there once,
none twice, none that was never sent (up to --deadline seconds); prints what it found and
exits non-zero if it never got there.

Python 3 standard library only.
"""

import argparse
import asyncio
import gzip
import itertools
import os
import sys
import time
import urllib.parse


def address(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


def dechunk(body):
    out = bytearray()
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return bytes(out)


async def http(server, method, target, headers=(), body=b"", timeout=10.0):
    """One request on a new connection; (status, body). Raises on no answer."""

    async def exchange():
        reader, writer = await asyncio.open_connection(*server)
        try:
            head = f"{method} {target} HTTP/1.1\r\nHost: {server[0]}:{server[1]}\r\nConnection: close\r\n"
            head += "".join(f"{k}: {v}\r\n" for k, v in headers)
            head += f"Content-Length: {len(body)}\r\n\r\n"
            writer.write(head.encode() + body)
            await writer.drain()
            answer = await reader.read()
        finally:
            writer.close()
        status_line, _, rest = answer.partition(b"\r\n")
        parts = status_line.split(b" ")
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise ConnectionError("no answer")
        header_block, _, payload = rest.partition(b"\r\n\r\n")
        if b"transfer-encoding: chunked" in header_block.lower():
            payload = dechunk(payload)
        return int(parts[1]), payload

    return await asyncio.wait_for(exchange(), timeout)


def load_bodies(folder):
    bodies = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".folded.txt"):
            with open(os.path.join(folder, name), "rb") as f:
                bodies.append(f.read().rstrip(b"\n"))
    if not bodies:
        sys.exit(f"no *.folded.txt bodies in {folder}")
    return bodies


def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    return values[max(0, min(len(values) - 1, int(len(values) * p / 100 + 0.999) - 1))]


async def run(args):
    bodies = load_bodies(args.bodies)
    os.makedirs(args.out, exist_ok=True)
    attempts = open(os.path.join(args.out, "attempts"), "w")
    acked = open(os.path.join(args.out, "acked"), "w")
    maybe = open(os.path.join(args.out, "maybe"), "w")
    queries = open(os.path.join(args.out, "queries"), "w")
    freshness = open(os.path.join(args.out, "freshness"), "w")
    start = time.monotonic()
    end = start + args.duration

    async def agent(a):
        await asyncio.sleep(args.interval * a / args.agents)
        name = urllib.parse.quote(f"e2e.cpu{{env=test,region=local,pod=agent-{a}}}", safe="")
        for n in itertools.count(1):
            tick = time.monotonic()
            if tick >= end:
                return
            line = f"kiln_e2e;agent_{a};upload_{n}"
            body = gzip.compress(bodies[(a + n) % len(bodies)] + f"\n{line} 1".encode(), compresslevel=1)
            now = int(time.time())
            target = f"/ingest?name={name}&from={now - 10}&until={now}&format=folded&sampleRate=100&spyName=pyroscope-rs"
            headers = [
                ("Content-Type", "binary/octet-stream"),
                ("Content-Encoding", "gzip"),
                ("Idempotency-Key", f"a{a}-u{n}"),
            ]
            ok = False
            for _ in range(10):
                t0 = time.monotonic()
                try:
                    status, _ = await http(args.proxy, "POST", target, headers, body, timeout=10)
                except (OSError, ConnectionError, asyncio.TimeoutError, ValueError):
                    status = 0
                attempts.write(f"{status} {time.monotonic() - t0:.4f} {int(time.time())}\n")
                if status == 200:
                    ok = True
                    break
                await asyncio.sleep(0.5)
            (acked if ok else maybe).write(line + "\n")
            await asyncio.sleep(max(0.0, tick + args.interval - time.monotonic()))

    async def query_loop():
        while time.monotonic() < end:
            t0 = time.monotonic()
            try:
                status, _ = await http(args.proxy, "GET", "/render?query=e2e.cpu&format=folded", timeout=30)
            except (OSError, ConnectionError, asyncio.TimeoutError, ValueError):
                status = 0
            queries.write(f"{status} {time.monotonic() - t0:.4f}\n")
            await asyncio.sleep(2)

    async def freshness_loop():
        for p in itertools.count(1):
            if time.monotonic() >= end:
                return
            with open(args.alive) as f:
                alive = [address(line.strip()) for line in f if line.strip()]
            on, off = alive[p % len(alive)], alive[(p + 1) % len(alive)]
            t0 = time.monotonic()
            try:
                status, _ = await http(on, "POST", "/ingest?name=fresh.cpu", body=f"main;probe_{p} 1".encode())
            except (OSError, ConnectionError, asyncio.TimeoutError, ValueError):
                status = 0
            if status == 200:
                wanted = f"main;probe_{p} ".encode()
                while time.monotonic() - t0 < 30:
                    try:
                        status, answer = await http(off, "GET", "/render?query=fresh.cpu&format=folded", timeout=5)
                        if any(line.startswith(wanted) for line in answer.split(b"\n")):
                            freshness.write(f"{(time.monotonic() - t0) * 1000:.0f}\n")
                            break
                    except (OSError, ConnectionError, asyncio.TimeoutError, ValueError):
                        pass
                    await asyncio.sleep(0.05)
            await asyncio.sleep(3)

    await asyncio.gather(*(agent(a) for a in range(1, args.agents + 1)), query_loop(), freshness_loop())
    for f in (attempts, acked, maybe, queries, freshness):
        f.close()


def report(args):
    def read(name):
        with open(os.path.join(args.out, name)) as f:
            return [line.split() for line in f if line.strip()]

    attempts = read("attempts")
    acked = read("acked")
    maybe = read("maybe")
    queries = read("queries")
    fresh = [float(x[0]) for x in read("freshness")]
    failed = [a for a in attempts if a[0] != "200"]
    statuses = {}
    for a in failed:
        statuses[a[0]] = statuses.get(a[0], 0) + 1
    latency = [float(a[1]) * 1000 for a in attempts]
    ok_queries = [float(q[1]) * 1000 for q in queries if q[0] == "200"]

    def ms(v):
        return "-" if v is None else f"{v:.0f} ms"

    print(f"uploads acknowledged: {len(acked)}; not acknowledged after 10 attempts: {len(maybe)}")
    print(f"attempts: {len(attempts)}, failed: {len(failed)} {statuses} (status 0: no answer)")
    print(f"ingest latency (every attempt): p50 {ms(percentile(latency, 50))}, p99 {ms(percentile(latency, 99))}, max {ms(percentile(latency, 100))}")
    print(
        f"query latency (merge of e2e.cpu through the proxy): p50 {ms(percentile(ok_queries, 50))}, "
        f"p99 {ms(percentile(ok_queries, 99))}, failed {len(queries) - len(ok_queries)} of {len(queries)}"
    )
    print(
        f"freshness lag: p50 {ms(percentile(fresh, 50))}, p99 {ms(percentile(fresh, 99))}, "
        f"max {ms(percentile(fresh, 100))} ({len(fresh)} probes)"
    )


async def verify(args):
    with open(os.path.join(args.out, "acked")) as f:
        acked = {line.strip() for line in f if line.strip()}
    with open(os.path.join(args.out, "maybe")) as f:
        maybe = {line.strip() for line in f if line.strip()}
    deadline = time.monotonic() + args.deadline
    while True:
        try:
            status, answer = await http(args.server, "GET", "/render?query=e2e.cpu&format=folded", timeout=60)
        except (OSError, ConnectionError, asyncio.TimeoutError, ValueError):
            status, answer = 0, b""
        seen = {}
        for line in answer.decode(errors="replace").split("\n"):
            if line.startswith("kiln_e2e;"):
                stack, _, value = line.rpartition(" ")
                seen[stack] = seen.get(stack, 0) + float(value)
        missing = len(acked - seen.keys())
        twice = sum(1 for v in seen.values() if v != 1)
        unknown = len(seen.keys() - acked - maybe)
        if status == 200 and missing == 0 and twice == 0 and unknown == 0:
            break
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(2)
    print(f"{args.server[0]}:{args.server[1]}: missing {missing}, counted other than once {twice}, never sent {unknown}, of {len(acked)} acknowledged")
    sys.exit(0 if status == 200 and missing == 0 and twice == 0 and unknown == 0 else 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--proxy", type=address, required=True)
    r.add_argument("--alive", required=True, help="file listing live servers (host:port a line)")
    r.add_argument("--agents", type=int, default=600)
    r.add_argument("--interval", type=float, default=10)
    r.add_argument("--duration", type=float, default=600)
    r.add_argument("--bodies", required=True)
    r.add_argument("--out", required=True)
    p = sub.add_parser("report")
    p.add_argument("--out", required=True)
    v = sub.add_parser("verify")
    v.add_argument("--server", type=address, required=True)
    v.add_argument("--out", required=True)
    v.add_argument("--deadline", type=float, default=120)
    args = parser.parse_args()
    if args.command == "run":
        asyncio.run(run(args))
    elif args.command == "report":
        report(args)
    else:
        asyncio.run(verify(args))


if __name__ == "__main__":
    main()
