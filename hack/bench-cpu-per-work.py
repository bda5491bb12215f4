#!/usr/bin/env python3
"""Forwarder CPU per unit of work, from a `portfwd_bench.py --json FILE` run.

The harness reports the forwarder's CPU seconds over each fixed-length test. A forwarder that
moves more bytes or requests in those seconds spends more CPU for that reason alone, so this
script also divides by the work done in the same sample:

  tcp1/tcp4/tcprev/udp  CPU seconds per GB delivered (udp: received, after loss)
  rr                    CPU microseconds per round trip (secs / avg latency round trips)
  crr/http              CPU microseconds per request

Usage: python3 hack/bench-cpu-per-work.py bench.json [REF_TARGET]   (REF_TARGET default: ref)
Prints per test: median raw CPU seconds, median CPU per unit of work, and the ratio of each
target to REF_TARGET for both.
"""
import json
import statistics
import sys


def per_work(test, sample, cpu_s, secs):
    if test in ("tcp1", "tcp4", "tcprev", "udp"):
        gb = sample["gbps"] * secs / 8
        return cpu_s / gb if gb > 0 else None, "s/GB"
    if test == "rr":
        trips = secs / (sample["usec"] * 1e-6)
        return cpu_s / trips * 1e6, "us/round trip"
    if test in ("crr", "http"):
        reqs = sample["rps"] * secs
        return cpu_s / reqs * 1e6 if reqs > 0 else None, "us/request"
    return None, ""


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    path = sys.argv[1]
    ref = sys.argv[2] if len(sys.argv) > 2 else "ref"
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"{path}: cannot read the harness JSON ({e}); run portfwd_bench.py --json {path}")
    secs = data["secs"]
    targets = [t for t in data["targets"] if t != "direct"]
    if ref not in targets:
        sys.exit(f"reference target {ref!r} is not in {path} (targets: {', '.join(targets)})")
    print(f"| test | unit | " + " | ".join(f"{t} cpu s | {t} per work" for t in targets) + " |")
    print("|---|---|" + "---|---|" * len(targets))
    for test in data["tests"]:
        raw, work, unit = {}, {}, ""
        for t in targets:
            samples = data["samples"].get(f"{t}/{test}", [])
            cpus = data["forwarder_cpu_s"].get(f"{t}/{test}", [])
            vals = []
            for s, c in zip(samples, cpus):
                v, unit = per_work(test, s, c, secs)
                if v is not None:
                    vals.append(v)
            if cpus:
                raw[t] = statistics.median(cpus)
            if vals:
                work[t] = statistics.median(vals)
        cells = []
        for t in targets:
            r = f"{raw[t]:.2f}" if t in raw else "-"
            w = f"{work[t]:.3g}" if t in work else "-"
            if t != ref and t in raw and raw.get(ref):
                r += f" ({raw[t] / raw[ref]:.2f}x)"
            if t != ref and t in work and work.get(ref):
                w += f" ({work[t] / work[ref]:.2f}x)"
            cells += [r, w]
        print(f"| {test} | {unit} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
