"""Keeps the code entries a `node --prof-process --preprocess` file's ticks refer to.

The preprocessed file lists every symbol of the node binary (45,000 C++ names, 8 MB) although a
short run's ticks touch a few hundred. This keeps the `code` entries that some tick names, in
their order, renumbers the ticks' and `functions`' references to them, drops functions left
without code, and keeps of `scripts` their url and name (not their source text); ticks, times and VM states are unchanged.
Usage: python3 v8-trim.py pre.json > v8-work.prof.json
"""
import json
import sys

profile = json.load(open(sys.argv[1]))
used = sorted({tick["s"][i] for tick in profile["ticks"] for i in range(0, len(tick["s"]), 2) if tick["s"][i] >= 0})
new_index = {old: new for new, old in enumerate(used)}
code = [profile["code"][old] for old in used]
functions = []
function_index = {}
for old_func, function in enumerate(profile["functions"]):
    codes = [new_index[c] for c in function["codes"] if c in new_index]
    if codes:
        function_index[old_func] = len(functions)
        functions.append({"name": function["name"], "codes": codes})
for entry in code:
    if "func" in entry:
        entry["func"] = function_index.get(entry["func"], entry["func"])
for tick in profile["ticks"]:
    tick["s"] = [new_index[v] if i % 2 == 0 and v >= 0 else v for i, v in enumerate(tick["s"])]
scripts = [script and {"url": script.get("url"), "name": script.get("name"), "id": script.get("id")} for script in profile["scripts"]]
json.dump({"code": code, "functions": functions, "ticks": profile["ticks"], "scripts": scripts}, sys.stdout, indent=1)
