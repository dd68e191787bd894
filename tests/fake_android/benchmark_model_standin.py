"""A host stand-in for TensorFlow Lite's ``benchmark_model``: it really runs the model
with the LiteRT interpreter and prints the real tool's output format (see
tests/fixtures/android). GPU and NNAPI delegates do not exist on the host: asked for
one, it fails the way the real tool does when a delegate cannot be created."""
import resource
import sys
import time

import numpy as np

CPU_ONLY = ("CAST", "GREATER", "SUM", "REDUCE_MAX")
"""LiteRT's Python API does not say how many nodes XNNPACK took, so the stand-in
estimates it: ops of these types are counted as left on the CPU."""


def flags(argv):
    out = {}
    for a in argv:
        if a.startswith("--") and "=" in a:
            k, v = a[2:].split("=", 1)
            out[k] = v
    return out


def main(argv):
    f = flags(argv)
    if "graph" not in f:
        print("ERROR: Please specify the name of your TF Lite input file with --graph", file=sys.stderr)
        return 1
    if f.get("use_gpu") == "true" or f.get("use_nnapi") == "true":
        which = "GPU" if f.get("use_gpu") == "true" else "NNAPI"
        print("INFO: STARTING!")
        print(f"ERROR: {which} acceleration is unsupported on this platform.")
        print("ERROR: Failed to apply delegate.", file=sys.stderr)
        return 1
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    threads, runs, warmup = int(f.get("num_threads", 1)), int(f.get("num_runs", 50)), int(f.get("warmup_runs", 1))
    xnn = f.get("use_xnnpack", "true") == "true"
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("INFO: STARTING!")
    print(f"INFO: Num threads: [{threads}]")
    print(f"INFO: Graph: [{f['graph']}]")
    print(f"INFO: #threads used for CPU inference: [{threads}]")
    print(f"INFO: Loaded model {f['graph']}")
    print("INFO: Initialized TensorFlow Lite runtime.")
    t0 = time.perf_counter()
    resolver = OpResolverType.AUTO if xnn else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    it = Interpreter(model_path=f["graph"], num_threads=threads, experimental_op_resolver_type=resolver)
    it.allocate_tensors()
    init_us = (time.perf_counter() - t0) * 1e6
    if xnn:
        ops = [op for op in it._get_ops_details() if op["op_name"] != "DELEGATE"]
        partitions = len(it._get_ops_details()) - len(ops)
        total, left = len(ops), sum(op["op_name"] in CPU_ONLY for op in ops)
        print("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.")
        print(f"VERBOSE: Replacing {total - left} out of {total} node(s) with delegate (TfLiteXNNPackDelegate) "
              f"node, yielding {partitions} partitions for subgraph 0.")
    rss_init = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for d in it.get_input_details():
        it.set_tensor(d["index"], np.random.default_rng(0).random(d["shape"], dtype=np.float32))

    def timed(n):
        ts = []
        for _ in range(n):
            t = time.perf_counter()
            it.invoke()
            ts.append((time.perf_counter() - t) * 1e6)
        return ts

    def line(ts):
        a = np.array(ts)
        return (f"INFO: count={len(a)} first={a[0]:.0f} curr={a[-1]:.0f} min={a.min():.0f} max={a.max():.0f} "
                f"avg={a.mean():g} std={a.std():.0f} p5={np.percentile(a, 5):.0f} median={np.median(a):.0f} "
                f"p95={np.percentile(a, 95):.0f}")
    print(f"INFO: Initialized session in {init_us / 1e3:g}ms.")
    print("INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.")
    w = timed(max(warmup, 1))
    print(line(w) + "\n")
    print(f"INFO: Running benchmark for at least {runs} iterations and at least 1 seconds but terminate if exceeding 150 seconds.")
    r = timed(runs)
    print(line(r) + "\n")
    print(f"INFO: Inference timings in us: Init: {init_us:.0f}, First inference: {w[0]:.0f}, "
          f"Warmup (avg): {np.mean(w):g}, Inference (avg): {np.mean(r):g}")
    print("INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to "
          "the actual memory footprint of the model at runtime. Take the information at your discretion.")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"INFO: Memory footprint delta from the start of the tool (MB): init={rss_init - rss0:g} overall={rss - rss0:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
