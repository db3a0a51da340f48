#!/usr/bin/env python3
"""An "agent" loop on cellbox: write code into a sandbox, run it, read the
result, and fix and retry until it passes.

No LLM is needed: the "model" is a scripted list of attempts, the way a test
drives an agent. Each attempt sees the previous failure (as an agent would
see it in its context) and returns the next program. The task: write
``solution.py`` that stores the first 10 primes in ``/workspace/result.json``.

Run against a local cellboxd::

    PYTHONPATH=sdk/python python3 sdk/python/examples/agent_loop.py \\
        [--socket /run/cellbox/cellbox.sock | --host http://127.0.0.1:7070 --api-key KEY]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Iterator, List, Optional

from cellbox import Client, Sandbox

EXPECTED = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]

# What a model might produce on successive turns: a crash, a wrong answer,
# then a fix.
SCRIPTED_ATTEMPTS: List[str] = [
    # 1: a typo -> NameError
    """import json
primes = [n for n in range(2, 30) if all(n % d for d in range(2, n))]
json.dump(primse, open("result.json", "w"))
""",
    # 2: off by one -> misses 29
    """import json
primes = [n for n in range(2, 29) if all(n % d for d in range(2, n))]
json.dump(primes, open("result.json", "w"))
""",
    # 3: correct
    """import json
primes = []
n = 2
while len(primes) < 10:
    if all(n % p for p in primes):
        primes.append(n)
    n += 1
json.dump(primes, open("result.json", "w"))
print("wrote", len(primes), "primes")
""",
]


def scripted_model(attempts: List[str]) -> Iterator[str]:
    """Yield the next program; the feedback sent in is what a real model
    would read (here it is only printed)."""
    feedback: Optional[str] = None
    for code in attempts:
        if feedback:
            print(f"  model sees: {feedback.strip().splitlines()[-1]}")
        feedback = yield code


def run_agent(sb: Sandbox, attempts: List[str], max_turns: int = 5) -> bool:
    """Drive the loop; returns True when an attempt passes the check."""
    model = scripted_model(attempts)
    code = next(model)
    for turn in range(1, max_turns + 1):
        print(f"turn {turn}: writing solution.py ({len(code)} bytes)")
        sb.files.write("/workspace/solution.py", code)
        if sb.files.exists("/workspace/result.json"):
            sb.files.remove("/workspace/result.json")  # no stale result from a previous turn
        r = sb.exec(["python3", "solution.py"], cwd="/workspace", timeout=30)
        if r.exit_code != 0:
            feedback = f"exit {r.exit_code}\n{r.stderr}"
        else:
            result = json.loads(sb.files.read_text("/workspace/result.json"))
            if result == EXPECTED:
                print(f"turn {turn}: passed: {result} ({r.stdout.strip()})")
                return True
            feedback = f"wrong result: got {result}, expected {EXPECTED}"
        print(f"turn {turn}: failed")
        try:
            code = model.send(feedback)
        except StopIteration:
            break
    return False


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--socket")
    ap.add_argument("--host")
    ap.add_argument("--api-key")
    args = ap.parse_args(argv)
    client = Client(socket=args.socket, host=args.host, api_key=args.api_key)
    with Sandbox.create(metadata={"example": "agent_loop"}, client=client) as sb:
        print(f"sandbox {sb.id}")
        ok = run_agent(sb, SCRIPTED_ATTEMPTS)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
