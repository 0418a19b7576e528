#!/usr/bin/env python3
"""A capturing HTTP/1.1 server for agent uploads (Python 3 standard library only).

Answers every request `200` with an empty body and keeps the connection alive; saves each
request into OUT_DIR in the format of server/tests/data/agents/:
  requests.log                    one entry per connection event and request: the request line,
                                  then every header as sent and the query parameters (`?k = v`)
  bodies/NNNN-connC.bin           the body, raw bytes as sent (after de-chunking, if chunked)
  bodies/NNNN-connC.request.txt   the request line and headers exactly as sent (CRLF removed)
usage: capture_server.py OUT_DIR [--port 4052]
"""
import argparse, asyncio, os, sys, time, urllib.parse

START = time.monotonic()


def stamp():
    return f"[{time.monotonic() - START:8.3f}s]"


class Capture:
    def __init__(self, out):
        self.out = out
        os.makedirs(os.path.join(out, "bodies"), exist_ok=True)
        self.log = open(os.path.join(out, "requests.log"), "a", buffering=1)
        self.connections = 0
        self.requests = 0

    def write(self, line):
        self.log.write(line + "\n")
        print(line, file=sys.stderr)

    async def serve(self, reader, writer):
        self.connections += 1
        conn = self.connections
        peer = writer.get_extra_info("peername")
        self.write(f"{stamp()} conn={conn} open {peer[0]}:{peer[1]} ")
        on_conn = 0
        why = "client closed (EOF)"
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head[:-4].decode("latin-1").split("\r\n")
                method, target, _version = lines[0].split(" ", 2)
                headers = [tuple(s.strip() for s in l.split(":", 1)) for l in lines[1:]]
                named = {k.lower(): v for k, v in headers}
                if "content-length" in named:
                    body = await reader.readexactly(int(named["content-length"]))
                elif "chunked" in named.get("transfer-encoding", "").lower():
                    body = b""
                    while True:
                        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                        chunk = await reader.readexactly(size + 2)
                        if size == 0:
                            break
                        body += chunk[:-2]
                else:
                    body = b""
                self.requests += 1
                on_conn += 1
                name = f"bodies/{self.requests:04d}-conn{conn}"
                with open(os.path.join(self.out, name + ".bin"), "wb") as f:
                    f.write(body)
                with open(os.path.join(self.out, name + ".request.txt"), "w") as f:
                    f.write("\n".join(lines) + "\n")
                self.write(f"{stamp()} conn={conn} req#{self.requests} (#{on_conn} on conn) "
                           f"{method} {target}  body={len(body)}B -> {name}.bin")
                for k, v in headers:
                    self.write(f"      {k}: {v}")
                for k, v in urllib.parse.parse_qsl(urllib.parse.urlsplit(target).query):
                    self.write(f"      ?{k} = {v}")
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except asyncio.IncompleteReadError as e:
            if e.partial:
                why = f"client closed mid-request ({len(e.partial)} bytes)"
        except ConnectionError as e:
            why = f"connection error: {e}"
        self.write(f"{stamp()} conn={conn} close  {why}")
        writer.close()


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--port", type=int, default=4052)
    args = parser.parse_args()
    capture = Capture(args.out)
    server = await asyncio.start_server(capture.serve, "127.0.0.1", args.port)
    print(f"capturing on http://127.0.0.1:{args.port} into {args.out}", file=sys.stderr)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
