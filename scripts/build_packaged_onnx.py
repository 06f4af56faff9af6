"""Write the packaged model's ONNX form and its sha256 beside it (run after replacing
portraitcolor/data/default.safetensors; scripts/train_default.sh does):

    python scripts/build_packaged_onnx.py            # writes data/default.onnx + .onnx.sha256
    python scripts/build_packaged_onnx.py --check    # exit 1 if they do not match the weights
"""

from __future__ import annotations

import sys

from portraitcolor.onnx_export import OnnxExportError, check_agreement, write_onnx
from portraitcolor.weights import PACKAGED_DEFAULT, PACKAGED_ONNX, PACKAGED_ONNX_SHA256, load_weights_file, sha256_of


def main(argv: list[str]) -> int:
    model = load_weights_file(PACKAGED_DEFAULT)
    if "--check" in argv:
        try:
            check_agreement(PACKAGED_ONNX.read_bytes(), model)
        except (OSError, OnnxExportError) as error:
            print(f"{PACKAGED_ONNX}: {error}", file=sys.stderr)
            return 1
        if PACKAGED_ONNX_SHA256.read_text(encoding="ascii").split()[0] != sha256_of(PACKAGED_ONNX):
            print(f"{PACKAGED_ONNX_SHA256}: does not match {PACKAGED_ONNX.name}", file=sys.stderr)
            return 1
        return 0
    write_onnx(model, PACKAGED_ONNX)
    PACKAGED_ONNX_SHA256.write_text(f"{sha256_of(PACKAGED_ONNX)}  {PACKAGED_ONNX.name}\n", encoding="ascii")
    print(PACKAGED_ONNX)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
