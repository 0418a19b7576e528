"""OTLP profile requests for Kiln's golden tests, built with the PyPI `opentelemetry-proto`.

Each case is an ExportProfilesServiceRequest written as `<case>.binpb` (protobuf); `cpu` is
also written as OTLP/JSON (`cpu.json`: lowerCamelCase, int64 as strings, ids in hex).
`expected.json` holds, per case, the totals each (application, profile type) must add up to,
computed here from the case's own samples, so the Rust side is checked against numbers it did
not compute. Run through make.sh (which pins the package in a venv of its own).
"""

import json
import sys
from pathlib import Path

from google.protobuf import json_format
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2 as service
from opentelemetry.proto.common.v1 import common_pb2 as common
from opentelemetry.proto.profiles.v1development import profiles_pb2 as pb

T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z, in nanoseconds
SECOND = 1_000_000_000


class Dictionary:
    """A request's dictionary: every table starts with its empty element, entries are shared."""

    def __init__(self):
        self.d = pb.ProfilesDictionary()
        self._strings, self._functions, self._attributes, self._stacks = {}, {}, {}, {}
        self.s("")
        self.d.mapping_table.add()
        self.d.location_table.add()
        self.d.function_table.add()
        self.d.link_table.add()
        self.d.attribute_table.add()
        self.d.stack_table.add()

    def s(self, text):
        if text not in self._strings:
            self._strings[text] = len(self.d.string_table)
            self.d.string_table.append(text)
        return self._strings[text]

    def attribute(self, key, value):
        if (key, value) not in self._attributes:
            entry = self.d.attribute_table.add(key_strindex=self.s(key))
            if isinstance(value, int):
                entry.value.int_value = value
            else:
                entry.value.string_value = value
            self._attributes[(key, value)] = len(self.d.attribute_table) - 1
        return self._attributes[(key, value)]

    def function(self, name, file=""):
        if (name, file) not in self._functions:
            self.d.function_table.add(name_strindex=self.s(name), filename_strindex=self.s(file))
            self._functions[(name, file)] = len(self.d.function_table) - 1
        return self._functions[(name, file)]

    def mapping(self, file, start=0, limit=0, offset=0, build_id=None):
        entry = self.d.mapping_table.add(
            memory_start=start, memory_limit=limit, file_offset=offset, filename_strindex=self.s(file)
        )
        if build_id:
            entry.attribute_indices.append(self.attribute("process.executable.build_id.gnu", build_id))
        return len(self.d.mapping_table) - 1

    def location(self, lines=(), mapping=0, address=0, frame_type=None):
        """`lines`: (function name, line number), innermost first."""
        entry = self.d.location_table.add(mapping_index=mapping, address=address)
        for name, line in lines:
            entry.lines.add(function_index=self.function(name), line=line)
        if frame_type:
            entry.attribute_indices.append(self.attribute("profile.frame.type", frame_type))
        return len(self.d.location_table) - 1

    def stack(self, locations):
        """`locations`: leaf first."""
        key = tuple(locations)
        if key not in self._stacks:
            self.d.stack_table.add(location_indices=locations)
            self._stacks[key] = len(self.d.stack_table) - 1
        return self._stacks[key]

    def profile(self, sample_type, period_type=None, period=0, time=T0, duration=10 * SECOND):
        p = pb.Profile(time_unix_nano=time, duration_nano=duration, period=period)
        p.sample_type.type_strindex = self.s(sample_type[0])
        p.sample_type.unit_strindex = self.s(sample_type[1])
        if period_type:
            p.period_type.type_strindex = self.s(period_type[0])
            p.period_type.unit_strindex = self.s(period_type[1])
        return p

    def sample(self, profile, stack, values=(), timestamps=(), attributes=()):
        s = profile.samples.add(stack_index=stack, values=list(values), timestamps_unix_nano=list(timestamps))
        s.attribute_indices.extend(self.attribute(k, v) for k, v in attributes)
        return s


def resource(request, attributes):
    rp = request.resource_profiles.add()
    for key, value in attributes:
        kv = rp.resource.attributes.add(key=key)
        if isinstance(value, int):
            kv.value.int_value = value
        else:
            kv.value.string_value = value
    return rp


def scope(rp, name):
    sp = rp.scope_profiles.add()
    sp.scope.name = name
    sp.scope.version = "1.0"
    return sp


class Expected:
    """Totals per (application, profile type), as the mapping must store them."""

    def __init__(self):
        self.totals = {}

    def add(self, app, profile_type, value):
        key = f"{app} {profile_type}"
        self.totals[key] = self.totals.get(key, 0) + value


def cpu():
    """What the eBPF profiler sends: samples/count with a cpu/nanoseconds period, counted by
    timestamps, kernel frames, unsymbolized native frames, inlined interpreted frames, process
    identity in the resource (newer profilers) and in sample attributes (older ones)."""
    d, e = Dictionary(), Expected()
    period = 50_000_000  # 20 Hz
    kernel_syscall = d.location([("do_syscall_64", 0)], frame_type="kernel")
    kernel_entry = d.location([("entry_SYSCALL_64_after_hwframe", 0)], frame_type="kernel")
    libc = d.mapping("/usr/lib/x86_64-linux-gnu/libc.so.6", 0x7F12_0000_0000, 0x7F12_0020_0000, 0x28000, "b10c")
    epoll = d.location(mapping=libc, address=0x7F12_0001_0A40, frame_type="native")
    nginx = d.mapping("/usr/sbin/nginx")
    nginx_main = d.location(mapping=nginx, address=0x4F2A1, frame_type="native")
    stripped = d.mapping("", build_id="deadbeefcafe")
    stripped_frame = d.location(mapping=stripped, address=0x1234, frame_type="native")
    # Index 0 everywhere: no mapping, no function name.
    nameless = d.location(lines=[("", 0)], address=0x99)
    py_inlined = d.location([("json.dumps", 231), ("handler", 40)], frame_type="cpython")
    py_main = d.location([("main", 1)], frame_type="cpython")

    request = service.ExportProfilesServiceRequest()
    rp = resource(request, [("container.id", "c0ffee"), ("process.executable.name", "nginx"), ("process.pid", 42)])
    p = d.profile(("samples", "count"), ("cpu", "nanoseconds"), period, time=T0, duration=5 * SECOND)
    stack = d.stack([kernel_syscall, kernel_entry, epoll, nginx_main])
    d.sample(p, stack, timestamps=[T0 + 1 * SECOND, T0 + 2 * SECOND, T0 + 3 * SECOND], attributes=[("thread.name", "worker-1")])
    d.sample(p, d.stack([stripped_frame, nameless, nginx_main]), values=[2], attributes=[("thread.name", "worker-2")])
    d.sample(p, 0, values=[1])  # no stack: counts at the root
    e.add("nginx", "cpu", (3 + 2 + 1) * period)
    scope(rp, "otel-ebpf-profiler").profiles.append(p)

    rp = resource(request, [("host.name", "box")])
    p = d.profile(("samples", "count"), ("cpu", "nanoseconds"), period, time=T0, duration=5 * SECOND)
    python_stack = d.stack([py_inlined, py_main])
    d.sample(p, python_stack, timestamps=[T0 + SECOND] * 4, attributes=[("process.executable.name", "python3.12"), ("thread.name", "MainThread")])
    d.sample(p, stack, values=[5], attributes=[("process.executable.name", "postgres")])
    d.sample(p, python_stack, values=[7])  # no process identity at all
    e.add("python3.12", "cpu", 4 * period)
    e.add("postgres", "cpu", 5 * period)
    e.add("unknown_service", "cpu", 7 * period)
    scope(rp, "otel-ebpf-profiler").profiles.append(p)
    request.dictionary.CopyFrom(d.d)
    return request, e


def alloc():
    """Allocation profiles of one service whose name has dots (never split into app and type)."""
    d, e = Dictionary(), Expected()
    alloc_site = d.stack([d.location([("malloc", 1)]), d.location([("make_buffer", 10)]), d.location([("main", 2)])])
    other_site = d.stack([d.location([("strdup", 3)]), d.location([("main", 2)])])
    request = service.ExportProfilesServiceRequest()
    rp = resource(request, [("service.name", "shop.alloc_space"), ("deployment.environment", "prod")])
    sp = scope(rp, "memprof")
    for sample_type, values, profile_type in [
        (("alloc_objects", "count"), (12, 3), "alloc_objects"),
        (("alloc_space", "bytes"), (4096, 512), "alloc_space"),
        (("inuse_space", "bytes"), (1024, 0), "inuse_space"),
    ]:
        p = d.profile(sample_type)
        d.sample(p, alloc_site, values=[values[0]])
        d.sample(p, other_site, values=[values[1]])
        e.add("shop.alloc_space", profile_type, sum(values))
        sp.profiles.append(p)
    request.dictionary.CopyFrom(d.d)
    return request, e


def multi():
    """Several resources and scopes in one request, cpu in nanoseconds beside counted samples,
    and off-CPU time whose timestamps span three 10 s buckets."""
    d, e = Dictionary(), Expected()
    work = d.stack([d.location([("work", 5)]), d.location([("main", 1)])])
    wait = d.stack([d.location([("futex_wait", 0)], frame_type="kernel"), d.location([("main", 1)])])
    request = service.ExportProfilesServiceRequest()
    rp = resource(request, [("service.name", "ledger.cpu")])
    p = d.profile(("cpu", "nanoseconds"))
    d.sample(p, work, values=[1_500_000])
    scope(rp, "first").profiles.append(p)
    p = d.profile(("samples", "count"), ("cpu", "nanoseconds"), 10_000_000)
    d.sample(p, work, values=[3])
    scope(rp, "second").profiles.append(p)
    e.add("ledger.cpu", "cpu", 1_500_000 + 3 * 10_000_000)

    rp = resource(request, [("service.name", "frontend")])
    p = d.profile(("off_cpu", "nanoseconds"), time=T0, duration=30 * SECOND)
    stamps = [T0 + 1 * SECOND, T0 + 12 * SECOND, T0 + 13 * SECOND, T0 + 25 * SECOND]
    d.sample(p, wait, values=[100, 200, 300, 400], timestamps=stamps)
    e.add("frontend", "off_cpu", 1000)
    scope(rp, "offcpu").profiles.append(p)
    request.dictionary.CopyFrom(d.d)
    return request, e


def partial():
    """A bad profile (a stack outside the table) between two good ones: it alone is refused."""
    d, e = Dictionary(), Expected()
    main = d.stack([d.location([("main", 1)])])
    request = service.ExportProfilesServiceRequest()
    sp = scope(resource(request, [("service.name", "orders")]), "s")
    for stack, value in [(main, 4), (999, 5), (main, 6)]:
        p = d.profile(("cpu", "nanoseconds"))
        d.sample(p, stack, values=[value])
        sp.profiles.append(p)
    e.add("orders", "cpu", 10)
    request.dictionary.CopyFrom(d.d)
    return request, e


def broken():
    """A dictionary whose location names a function outside the function table: every profile
    of the request is refused."""
    d, e = Dictionary(), Expected()
    main = d.stack([d.location([("main", 1)])])
    request = service.ExportProfilesServiceRequest()
    p = d.profile(("cpu", "nanoseconds"))
    d.sample(p, main, values=[1])
    scope(resource(request, [("service.name", "broken")]), "s").profiles.append(p)
    d.d.location_table[1].lines[0].function_index = 77
    request.dictionary.CopyFrom(d.d)
    return request, e


def otlp_json(request):
    """OTLP/JSON as exporters write it: the protobuf JSON mapping, with ids in hex."""
    data = json_format.MessageToDict(request)

    def hex_ids(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("profileId", "traceId", "spanId") and isinstance(value, str):
                    import base64

                    node[key] = base64.b64decode(value).hex()
                else:
                    hex_ids(value)
        elif isinstance(node, list):
            for item in node:
                hex_ids(item)

    hex_ids(data)
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def main(out):
    out = Path(out)
    expected = {}
    for name, build in [("cpu", cpu), ("alloc", alloc), ("multi", multi), ("partial", partial), ("broken", broken)]:
        request, totals = build()
        (out / f"{name}.binpb").write_bytes(request.SerializeToString())
        expected[name] = totals.totals
        if name == "cpu":
            (out / "cpu.json").write_text(otlp_json(request))
    (out / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
