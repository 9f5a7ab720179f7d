"""Python greenlet's figures for `cargo xtask bench`, in the memprobe's output format.

    python greenlet_bench.py switch  [--runs R] [--iters N]
    python greenlet_bench.py create  [--runs R] [--iters N]
    python greenlet_bench.py memory  [--live N] [--depth D] [--rss-cap-mib M]

`switch` and `create` print one `run ns_per_op=<x>` line per run: a round trip
(g.switch -> main.switch) or a create + run to completion + drop of a trivial greenlet.
`memory` keeps up to N greenlets alive and suspended, each D Python frames deep, and
prints `progress` lines and one `result` line, as `memprobe` does.
"""

import argparse
import gc
import sys
import time

from greenlet import greenlet, getcurrent


def status_kib(field):
    """A figure from /proc/self/status in KiB (0 where there is none)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def bench_switch(iters):
    main = getcurrent()

    def echo(value):
        while True:
            value = main.switch(value)

    g = greenlet(echo)
    g.switch(0)
    switch = g.switch
    start = time.perf_counter_ns()
    for i in range(iters):
        switch(i)
    elapsed = time.perf_counter_ns() - start
    g.throw()  # GreenletExit: let it die quietly
    return elapsed / iters


def bench_create(iters):
    def identity(value):
        return value

    start = time.perf_counter_ns()
    for i in range(iters):
        greenlet(identity).switch(i)
    elapsed = time.perf_counter_ns() - start
    return elapsed / iters


def descend(depth, main):
    frame = [depth] * 8
    if depth == 0:
        main.switch()
        return frame
    descend(depth - 1, main)
    return frame


def memory(live, depth, cap_kib):
    main = getcurrent()
    gc.collect()
    gc.disable()
    alive = []
    rss_before = status_kib("VmRSS")
    start = time.perf_counter()
    stop = "target reached"
    while len(alive) < live:
        try:
            g = greenlet(descend)
            g.switch(depth, main)
        except MemoryError as e:
            stop = "error: MemoryError %s" % e
            break
        alive.append(g)
        if len(alive) % 50000 == 0:
            rss = status_kib("VmRSS")
            print("progress live=%d rss_kib=%d" % (len(alive), rss), flush=True)
            if rss > cap_kib:
                stop = "rss cap"
                break
    seconds = time.perf_counter() - start
    print(
        "result impl=python-greenlet guard=none target=%d reached=%d depth=%d "
        "rss_before_kib=%d rss_after_kib=%d hwm_kib=%d seconds=%.2f stop=%s"
        % (live, len(alive), depth, rss_before, status_kib("VmRSS"),
           status_kib("VmHWM"), seconds, stop),
        flush=True,
    )
    # Killing a million greenlets is not what we measure: leave them to the OS.
    sys.stdout.flush()
    import os
    os._exit(0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["switch", "create", "memory"])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--iters", type=int, default=200_000)
    parser.add_argument("--live", type=int, default=100_000)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--rss-cap-mib", type=int, default=8192)
    args = parser.parse_args()
    if args.mode == "memory":
        memory(args.live, args.depth, args.rss_cap_mib * 1024)
        return
    bench = bench_switch if args.mode == "switch" else bench_create
    bench(args.iters // 10)  # warm up
    for _ in range(args.runs):
        print("run ns_per_op=%.2f" % bench(args.iters), flush=True)


if __name__ == "__main__":
    main()
