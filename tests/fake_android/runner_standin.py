"""A host implementation of the on-device runner contract of `mkn android parity`
(android_harness/device_parity.py): LiteRT runs the model once on IN.raw and every
signature output is written as OUTPUT_DIR/<name>.raw (float32)."""
import sys
from pathlib import Path

import numpy as np


def main(argv):
    f = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    if f.get("use_gpu") == "true" or f.get("use_nnapi") == "true":
        print("ERROR: GPU/NNAPI acceleration is unsupported on this platform.", file=sys.stderr)
        return 1
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = (OpResolverType.AUTO if f.get("use_xnnpack", "true") == "true"
                else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it = Interpreter(model_path=f["graph"], num_threads=int(f.get("num_threads", 1)),
                     experimental_op_resolver_type=resolver)
    run = it.get_signature_runner()
    (name, detail), = run.get_input_details().items()
    x = np.fromfile(f["input"], dtype="<f4").reshape(detail["shape"])
    for out, value in run(**{name: x}).items():
        np.asarray(value, dtype="<f4").tofile(Path(f["output_dir"]) / f"{out}.raw")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
