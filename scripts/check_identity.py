"""Tags of every bundle method on real photos, as JSON: run it with the old and the new code and diff the files.

    python scripts/check_identity.py MODEL_DIR OUT.json PHOTO... (run from the checkout whose code is checked)

Per method: each photo tagged alone (as the CLI does) and all photos in one batch (as photo_eval does); the
features' bytes are hashed too. Scores are written with repr, so equal files mean bit-identical scores.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np


def main() -> None:
    model_dir, out, photos = Path(sys.argv[1]), Path(sys.argv[2]), [Path(p) for p in sys.argv[3:]]
    sys.path.insert(0, str(Path.cwd()))
    import torch

    from tagan.tagging.bundle import Bundle
    from tagan.tagging.features import extract_features, load_backbone
    from tagan.tagging.tagger import Tagger

    bundle = Bundle.load(model_dir)
    backbone = load_backbone(bundle.features)
    torch.set_num_threads(1)
    got = list(extract_features(photos, backbone, batch_size=4, workers=0, max_side=bundle.features.max_side,
                                max_pixels=bundle.features.max_pixels))  # fmt: skip
    names = [e.path.name for e in got if e.feature is not None]
    feats = np.stack([e.feature for e in got if e.feature is not None]).astype(np.float32)  # (N, F)
    result: dict = {"features_sha256": hashlib.sha256(feats.tobytes()).hexdigest(), "photos": names}
    for method in sorted(bundle.methods):
        tagger = Tagger.load(model_dir, method)
        alone = [tagger.tag(feats[i : i + 1], top_k=10, seed=0)[0] for i in range(len(feats))]
        batch = tagger.tag(feats, top_k=10, seed=0)
        allowed = set(tagger.words[::7])
        vocab = [
            tagger.tag(feats[i : i + 1], top_k=10, seed=3, allowed=allowed)[0] for i in range(len(feats))
        ]
        result[method] = {k: [[(t, repr(float(s))) for t, s in tags] for tags in v]
                          for k, v in (("alone", alone), ("batch", batch), ("allowed_seed3", vocab))}  # fmt: skip
    out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
