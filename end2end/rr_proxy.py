#!/usr/bin/env python3
"""A round-robin TCP proxy for end2end/cluster.sh: what a plain load balancer does.

Each accepted connection goes to the next backend in turn; a backend that refuses the
connection is skipped for this connection (as HAProxy's `redispatch` does), so a dead server
costs the requests in flight on it, not every third one after it. No health checks, no
HTTP awareness: bytes are copied both ways until either side closes.

    end2end/rr_proxy.py --listen 127.0.0.1:24000 127.0.0.1:24081 127.0.0.1:24082 ...

Python 3 standard library only.
"""

import argparse
import asyncio
import itertools
import sys


def address(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except (ConnectionError, OSError):
            pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=address, required=True)
    parser.add_argument("backends", type=address, nargs="+")
    args = parser.parse_args()
    turn = itertools.count()

    async def serve(client_reader, client_writer):
        first = next(turn)
        for i in range(len(args.backends)):
            host, port = args.backends[(first + i) % len(args.backends)]
            try:
                backend_reader, backend_writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port), timeout=2
                )
                break
            except (ConnectionError, OSError, asyncio.TimeoutError):
                continue
        else:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, backend_writer), pipe(backend_reader, client_writer))

    async def run():
        server = await asyncio.start_server(serve, *args.listen, backlog=4096)
        print(f"proxy on {args.listen[0]}:{args.listen[1]}", file=sys.stderr, flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(run())


if __name__ == "__main__":
    main()
