#!/usr/bin/env python3
"""Builds multipart/form-data uploads byte for byte as the Go agent (grafana/pyroscope-go) sends
them, around real pprof profiles captured from the Node agent (see README.md beside this file).
Python 3 standard library only; deterministic: running it again writes the same bytes.

What the Go agent does (upstream/remote/remote.go, uploadProfile):
  * body: mime/multipart.Writer; part `profile` (CreateFormFile("profile", "profile.pprof")), then
    `prev_profile` only when set (never, in current sessions), then `sample_type_config`
    (CreateFormFile("sample_type_config", "sample_type_config.json")) only when the job has one:
    the heap, mutex, block and goroutine jobs do, the CPU job does not. Each part's headers are
    `Content-Disposition: form-data; name="…"; filename="…"` and `Content-Type:
    application/octet-stream`, sorted by name; parts are separated by CRLF--boundary CRLF; the
    body ends with CRLF--boundary--CRLF. The boundary is 30 random bytes in hex (60 characters).
  * the profile part holds what runtime/pprof (CPU) or godeltaprof (heap) wrote: a gzipped pprof
    (gzip level BestSpeed); the request itself has no Content-Encoding.
  * query: url.Values{name, from, until, spyName, sampleRate, units, aggregationType}.Encode():
    keys sorted, values QueryEscape'd, empty values kept (`units=`); from/until in Unix
    nanoseconds.
  * headers (net/http, HTTP/1.1): Host, User-Agent: Go-http-client/1.1, Content-Length,
    Content-Type: multipart/form-data; boundary=…, Accept-Encoding: gzip.

usage: make_body.py [--cpu-profile GZ_PPROF] [--heap-profile GZ_PPROF] [--out DIR]
"""
import argparse, gzip, json, os, urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
NODE = os.path.join(HERE, "..", "node-0.6", "bodies")

# Fixed so that the output is reproducible; the agent draws a fresh random one per upload.
BOUNDARY = "8c6e0f1d2b3a49c5a7e1d0f2b4c6a8e0d1f3b5c7e9a0c2e4f6b8d0a1c3e5"
HOST = "127.0.0.1:4040"

# session.go / sample_types.go: what each job sends as sample_type_config (none for CPU).
# upstream.SampleType marshals as {units, aggregation, display-name, sampled, cumulative}, each
# omitted when empty or false; json.Marshal sorts the map's keys.
SAMPLE_TYPE_CONFIG_HEAP = {
    "alloc_objects": {"units": "objects"},
    "alloc_space": {"units": "bytes"},
    "inuse_space": {"units": "bytes", "aggregation": "average"},
    "inuse_objects": {"units": "objects", "aggregation": "average"},
}

# The application name the Go agent builds (internal/semconv): the configured name and tags plus
# a per-process session id and the runtime and scope, keys sorted. The versions are examples.
TAGS = {
    "__session_id__": "5f2a9c1e7b3d4e60",
    "env": "test",
    "process.runtime.name": "go",
    "process.runtime.version": "go1.25.4",
    "region": "local",
}
SCOPES = {
    "cpu": {"otel.scope.name": "com.grafana.pyroscope/go", "otel.scope.version": "v1.5.0"},
    "heap": {"otel.scope.name": "com.grafana.pyroscope/godeltaprof", "otel.scope.version": "v0.1.9"},
}


def varint(b, i):
    r = s = 0
    while True:
        c = b[i]; i += 1
        r |= (c & 0x7F) << s; s += 7
        if c < 0x80:
            return r, i


def put_varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80); n >>= 7
    out.append(n)
    return bytes(out)


def fields(b):
    """(field number, wire type, raw bytes of the whole field, value) for each top-level field."""
    i = 0
    while i < len(b):
        start = i
        key, i = varint(b, i)
        f, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(b, i)
        elif wt == 1:
            v = b[i:i + 8]; i += 8
        elif wt == 5:
            v = b[i:i + 4]; i += 4
        elif wt == 2:
            n, i = varint(b, i); v = b[i:i + n]; i += n
        else:
            raise ValueError(f"wire type {wt}")
        yield f, wt, b[start:i], v


def pprof_times(raw):
    """time_nanos and duration_nanos of a pprof (0 where absent)."""
    t = d = 0
    for f, wt, _, v in fields(raw):
        if f == 9: t = v
        elif f == 10: d = v
    return t, d


def rename_strings(raw, renames):
    """The pprof with string-table entries replaced (`wall` -> `cpu`); the rest as it was."""
    out = bytearray()
    for f, wt, whole, v in fields(raw):
        if f == 6 and v.decode("utf-8", "replace") in renames:
            s = renames[v.decode()].encode()
            out += put_varint(6 << 3 | 2) + put_varint(len(s)) + s
        else:
            out += whole
    return bytes(out)


def go_json(config):
    """json.Marshal of map[string]*upstream.SampleType: map keys sorted, struct fields in their
    declared order (units, aggregation, display-name, sampled, cumulative), no spaces."""
    order = ["units", "aggregation", "display-name", "sampled", "cumulative"]
    return json.dumps({name: {k: config[name][k] for k in order if config[name].get(k)}
                       for name in sorted(config)}, separators=(",", ":"))


def app_name(kind):
    labels = dict(TAGS, **SCOPES[kind])
    return "agenttest.go{" + ",".join(f"{k}={labels[k]}" for k in sorted(labels)) + "}"


def multipart(parts):
    body = bytearray()
    for i, (name, filename, data) in enumerate(parts):
        body += (b"\r\n--" if i else b"--") + BOUNDARY.encode() + b"\r\n"
        body += f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'.encode()
        body += b"Content-Type: application/octet-stream\r\n\r\n"
        body += data
    body += b"\r\n--" + BOUNDARY.encode() + b"--\r\n"
    return bytes(body)


def request(kind, raw_pprof, config):
    # The Node agent stamps a profile with the time it was taken (the end of its window); a
    # heap profile has no duration, and the Go agent's job then covers one 10 s interval.
    time_nanos, duration = pprof_times(raw_pprof)
    start, end = time_nanos - (duration or 10_000_000_000), time_nanos
    # What runtime/pprof and godeltaprof write: gzip at BestSpeed, no name, no mtime.
    profile = gzip.compress(raw_pprof, compresslevel=1, mtime=0)
    parts = [("profile", "profile.pprof", profile)]
    if config is not None:
        parts.append(("sample_type_config", "sample_type_config.json",
                      go_json(config).encode()))
    body = multipart(parts)
    query = {
        "name": app_name(kind),
        "from": str(start),
        "until": str(end),
        "spyName": "gospy",
        "sampleRate": "100",
        "units": "samples" if kind == "cpu" else "",
        "aggregationType": "sum" if kind == "cpu" else "",
    }
    target = "/ingest?" + "&".join(f"{k}={urllib.parse.quote_plus(query[k], safe='')}" for k in sorted(query))
    head = [
        f"POST {target} HTTP/1.1",
        f"Host: {HOST}",
        "User-Agent: Go-http-client/1.1",
        f"Content-Length: {len(body)}",
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}",
        "Accept-Encoding: gzip",
    ]
    return head, body, query


def read_pprof(path):
    data = open(path, "rb").read()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpu-profile", default=os.path.join(NODE, "0001-conn1.bin"),
                    help="a pprof (gzipped or not) to send as the CPU profile; `wall` is renamed `cpu`")
    ap.add_argument("--heap-profile", default=os.path.join(NODE, "0002-conn2.bin"),
                    help="a pprof (gzipped or not) to send as the heap profile")
    ap.add_argument("--out", default=HERE)
    a = ap.parse_args()
    cpu = rename_strings(read_pprof(a.cpu_profile), {"wall": "cpu"})
    heap = read_pprof(a.heap_profile)
    log = []
    for n, (kind, raw, config) in enumerate([("cpu", cpu, None), ("heap", heap, SAMPLE_TYPE_CONFIG_HEAP)], 1):
        head, body, query = request(kind, raw, config)
        with open(os.path.join(a.out, f"{kind}.body"), "wb") as f:
            f.write(body)
        with open(os.path.join(a.out, f"{kind}.request.txt"), "w") as f:
            f.write("\n".join(head) + "\n")
        # The requests.log format of the captures beside this folder (header names lower case).
        log.append(f"[   0.000s] conn=1 req#{n} (#{n} on conn) {head[0].split(' ')[0]} {head[0].split(' ')[1]}"
                   f"  body={len(body)}B -> {kind}.body")
        log += [f"      {h.split(': ', 1)[0].lower()}: {h.split(': ', 1)[1]}" for h in head[1:]]
        log += [f"      ?{k} = {query[k]}" for k in sorted(query)]
        print(f"{kind}.body: {len(body)} B (pprof {len(raw)} B raw)")
    with open(os.path.join(a.out, "requests.log"), "w") as f:
        f.write("\n".join(log) + "\n")


if __name__ == "__main__":
    main()
