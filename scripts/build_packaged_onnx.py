"""Write each packaged model's ONNX form and its sha256 beside it (run after replacing a model
in portraitcolor/data/; scripts/train_default.sh does):

    python scripts/build_packaged_onnx.py            # writes data/NAME.onnx + NAME.onnx.sha256
    python scripts/build_packaged_onnx.py --check    # exit 1 if they do not match the weights
"""

from __future__ import annotations

import sys

from portraitcolor.onnx_export import OnnxExportError, check_agreement, write_onnx
from portraitcolor.weights import PACKAGED, load_weights_file, packaged_onnx_paths, sha256_of


def main(argv: list[str]) -> int:
    check = "--check" in argv
    for weights in PACKAGED.values():
        if not weights.exists():
            continue
        model, (onnx, recorded_in) = load_weights_file(weights), packaged_onnx_paths(weights)
        if not check:
            write_onnx(model, onnx)
            recorded_in.write_text(f"{sha256_of(onnx)}  {onnx.name}\n", encoding="ascii")
            print(onnx)
            continue
        try:
            check_agreement(onnx.read_bytes(), model)
        except (OSError, OnnxExportError) as error:
            print(f"{onnx}: {error}", file=sys.stderr)
            return 1
        if recorded_in.read_text(encoding="ascii").split()[0] != sha256_of(onnx):
            print(f"{recorded_in}: does not match {onnx.name}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
