"""Keeps the lines of a raw `node --prof` log (isolate-*.log) that its ticks need.

A short run's log is mostly the source text of node's own scripts (`script-source`), source
position tables (`code-source-info`), heap bookkeeping (`new`, `delete`) and the creation of
about 2,000 builtins and bytecode handlers that no tick lands in (1.4 MB). This keeps the
header lines, the shared libraries, every tick, and the `code-creation` lines whose code some
tick's address falls in; lines are otherwise as V8 wrote them, in their order. In a log with
code moves or deletions, where which entry an address falls in depends on when, every
`code-creation`, `code-move`, `code-delete` and `sfi-move` line is kept: only the records that
place no code go.
Usage: python3 v8-isolate-trim.py isolate-….log > v8-work.isolate.log
"""
import sys

lines = open(sys.argv[1], encoding="latin-1").read().split("\n")
kinds = {line.split(",", 1)[0] for line in lines}
moves = bool(kinds & {"code-move", "code-delete", "sfi-move"})


def addresses(fields):
    """The addresses a `tick` line's stack is made of, as V8's tick processor reads them."""
    pc, external, tos = int(fields[1], 0), fields[3] == "1", int(fields[4], 0)
    stack = [tos] if external else [pc, tos] if tos else [pc]
    previous = pc
    for frame in fields[6:]:
        if frame[:1] in "+-":
            previous += int(frame, 0)
            stack.append(previous)
        elif not frame.startswith("o"):
            stack.append(int(frame, 0))
    return stack


ticked = sorted({a for line in lines if line.startswith("tick,") for a in addresses(line.split(","))})


def needed(fields):
    import bisect
    start, size = int(fields[4], 0), int(fields[5], 0)
    at = bisect.bisect_left(ticked, start)
    return at < len(ticked) and ticked[at] < start + size


keep = ("v8-version", "v8-platform", "shared-library", "shared-library-end", "profiler", "tick")
if moves:
    keep += ("code-creation", "code-move", "code-delete", "sfi-move")
out = [line for line in lines if line.split(",", 1)[0] in keep or (line.startswith("code-creation,") and needed(line.split(",")))]
sys.stdout.write("\n".join(out) + "\n")
