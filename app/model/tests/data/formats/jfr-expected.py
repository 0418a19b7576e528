"""The profiles Kiln should read from a JFR file, as `jfr print --json` reports its events:
folded stacks (root first, frames `class/Name.method`) per profile, under `# type (units): total`
lines. Events without a stack trace are left out, as Pyroscope does; an empty stack trace counts in
the total only (folded stacks have no line for the root itself)."""
import json
import re
import subprocess
import sys
from collections import Counter

# Event → (profile type, units, value of one event) in Kiln's order of profiles.
PROFILES = [
    ("jdk.ExecutionSample", "cpu", "samples", lambda v: 1),
    ("jdk.NativeMethodSample", "native", "samples", lambda v: 1),
    ("jdk.ObjectAllocationInNewTLAB", "alloc_in_new_tlab_objects", "objects", lambda v: 1),
    ("jdk.ObjectAllocationInNewTLAB", "alloc_in_new_tlab_bytes", "bytes", lambda v: v["tlabSize"]),
    ("jdk.ObjectAllocationOutsideTLAB", "alloc_outside_tlab_objects", "objects", lambda v: 1),
    ("jdk.ObjectAllocationOutsideTLAB", "alloc_outside_tlab_bytes", "bytes", lambda v: v["allocationSize"]),
    ("jdk.ObjectAllocationSample", "alloc_sample_objects", "objects", lambda v: 1),
    ("jdk.ObjectAllocationSample", "alloc_sample_bytes", "bytes", lambda v: v["weight"]),
    ("jdk.JavaMonitorEnter", "lock_count", "lock_samples", lambda v: 1),
    ("jdk.JavaMonitorEnter", "lock_duration", "lock_nanoseconds", lambda v: nanos(v["duration"])),
    ("jdk.ThreadPark", "block_count", "lock_samples", lambda v: 1),
    ("jdk.ThreadPark", "block_duration", "lock_nanoseconds", lambda v: nanos(v["duration"])),
]


def nanos(iso):
    """`PT0.228814367S`, `PT1M2.5S`, `PT0S` → nanoseconds."""
    m = re.fullmatch(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)(?:\.(\d+))?S)?", iso)
    hours, minutes, seconds, fraction = m.groups()
    total = (int(hours or 0) * 60 + int(minutes or 0)) * 60 + int(seconds or 0)
    return total * 10**9 + int((fraction or "").ljust(9, "0")[:9])


def stack(values):
    trace = values.get("stackTrace")
    if not trace:
        return None
    frames = [f'{f["method"]["type"]["name"]}.{f["method"]["name"]}' for f in trace["frames"]]
    return ";".join(reversed(frames))


def main(path):
    events = {}
    for event in sorted({p[0] for p in PROFILES}):
        out = subprocess.run(
            ["jfr", "print", "--json", "--stack-depth", "2048", "--events", event, path],
            check=True, capture_output=True, text=True,
        ).stdout
        events[event] = [e["values"] for e in json.loads(out)["recording"]["events"]]
    for event, profile_type, units, value in PROFILES:
        folded = Counter()
        for values in events[event]:
            s = stack(values)
            if s is not None:
                folded[s] += value(values)
        folded = {k: v for k, v in folded.items() if v > 0}
        if not folded:
            continue
        print(f"# {profile_type} ({units}): {sum(folded.values())}")
        for s in sorted(folded):
            # An empty stack is the root's own value: counted in the total, not a line.
            if s:
                print(f"{s} {folded[s]}")


main(sys.argv[1])
