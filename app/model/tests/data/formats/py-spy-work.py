"""A small CPU-bound program for py-spy to sample (its speedscope output is a test file)."""
import json


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def encode(rows):
    return json.dumps([{"i": i, "sq": i * i} for i in range(rows)])


def main():
    total = 0
    for _ in range(30):
        total += fib(22)
        total += len(encode(20000))
    print(total)


main()
