# Drops what Kiln does not read from a Gecko profile (markers, counters, the profiler's own log,
# the JS sources) to keep the committed file small; samples, stacks, frames and strings stay as
# Firefox wrote them. python3 gecko-trim.py out.json > gecko-fib.json
import json, sys

def trim(profile):
    for key in ("counters", "profilingLog", "sources"):
        profile.pop(key, None)
    for thread in profile["threads"]:
        markers = thread.get("markers")
        if isinstance(markers, dict):
            markers["data"] = []
    for child in profile.get("processes", []):
        trim(child)

profile = json.load(open(sys.argv[1]))
trim(profile)
print(json.dumps(profile, separators=(",", ":")))
