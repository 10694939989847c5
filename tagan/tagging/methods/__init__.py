"""Tagging methods: one registered class per kind, with fit, save, load and tag (and scores where it has them).

    from tagan.tagging import methods
    methods.list_methods()                         # registered kinds: prior, knn, ..., cgan, cgan_open
    m = methods.get_method("knn").fit(ctx, k_grid=[1, 5])   # tag_eval: fit on a FitContext
    m.save(bundle_dir / "methods" / "knn")        # its own files; info.json names its kind and settings
    m = methods.load_method(bundle_dir, "knn")     # photo_eval, the CLI: by name (or alias) from a bundle
    m.tag(features, top_k=10, seed=0, allowed=None)  # (B, F) -> per image [(word, score), ...]
    methods.available(bundle_dir)                  # the names a bundle serves (no torch import)

A new method (or a new kind of evidence) is one `Method` subclass in a family module, registered with
`@register_method("kind")`; the family modules below are imported here, so importing this package registers all.
"""

from tagan.tagging.bundle import available
from tagan.tagging.methods import baselines, cgan, open_vocab  # noqa: F401  (registers every kind)
from tagan.tagging.methods.base import (
    FitContext,
    Method,
    Resources,
    ScoreMethod,
    VoteMethod,
    get_method,
    list_methods,
    load_method,
    register_method,
    save_method,
    settings_dict,
)

__all__ = [
    "FitContext",
    "Method",
    "Resources",
    "ScoreMethod",
    "VoteMethod",
    "available",
    "get_method",
    "list_methods",
    "load_method",
    "register_method",
    "save_method",
    "settings_dict",
]
