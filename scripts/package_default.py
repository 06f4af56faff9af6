"""Make a trained model the packaged default: hint inputs added (at zero weight, unless it was
trained with --hints), the training summary completed with its set's mean colour, then its
ONNX form built (scripts/train_default.sh runs this as its last step).

    python scripts/package_default.py TRAINED.safetensors --set SET.h5 [--out portraitcolor/data/default.safetensors]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from portraitcolor.model import with_inputs_of  # noqa: E402
from portraitcolor.runs import SUMMARY_MEAN_AB  # noqa: E402
from portraitcolor.setfile import train_mean_ab  # noqa: E402
from portraitcolor.weights import BUILTIN_NAME, PACKAGED, load_weights_file, save_weights  # noqa: E402

HINT_INPUTS_NOTE = "added at zero weight after training: the network ignores them; hints reach their regions by colorize's propagation"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trained", type=Path)
    parser.add_argument("--set", type=Path, required=True, help="the set it was trained on (for its mean colour)")
    parser.add_argument("--out", type=Path, default=PACKAGED[BUILTIN_NAME])
    options = parser.parse_args(argv)

    trained = load_weights_file(options.trained)
    training = dict(trained.metadata.get("training") or {})
    if training.get(SUMMARY_MEAN_AB) is None:
        training[SUMMARY_MEAN_AB] = list(train_mean_ab(options.set)[0])
    model = trained
    if not trained.config.hints:
        model = with_inputs_of(trained, replace(trained.config, hints=True))
        training["hint_inputs"] = HINT_INPUTS_NOTE
    save_weights(model.eval(), options.out, training=training)
    print(options.out)
    if options.out == PACKAGED[BUILTIN_NAME]:
        from build_packaged_onnx import main as build_onnx

        return build_onnx([])
    return 0


if __name__ == "__main__":
    sys.exit(main())
