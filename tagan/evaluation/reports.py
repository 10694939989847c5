"""The tag evaluation's reports: the methods x metrics table, example tags per method (markdown and a PNG grid)."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import numpy as np

from tagan.files import atomic_path, write_text
from tagan.readers.images import load_image
from tagan.tagging.index import TagData, Tags

log = logging.getLogger(__name__)

COLUMNS = [
    ("p_at_5", "P@5"),
    ("r_at_5", "R@5"),
    ("f1_at_5", "F1@5"),
    ("p_at_10", "P@10"),
    ("map", "mAP"),
    ("coverage", "coverage"),
]


def results_table(results: dict[str, dict[str, float]]) -> str:
    """Markdown table of methods x metrics (plus P@5's margin over the prior where it was measured)."""
    margins = any("p_at_5_vs_prior" in m for m in results.values())
    extra = " P@5 - prior [95% CI] |" if margins else ""
    lines = [
        "| method | " + " | ".join(c for _, c in COLUMNS) + " | diversity |" + extra,
        "|---" * (len(COLUMNS) + 2 + margins) + "|",
    ]
    for name, m in results.items():
        cells = [f"{m[k]:.0f}" if k == "coverage" else f"{m[k]:.3f}" for k, _ in COLUMNS]
        cells.append(
            f"{m['mean_pairwise_cosine_distance']:.3f}" if "mean_pairwise_cosine_distance" in m else "-"
        )
        if margins:
            cells.append(
                f"{m['p_at_5_vs_prior']:+.3f} [{m['p_at_5_vs_prior_lo']:+.3f}, {m['p_at_5_vs_prior_hi']:+.3f}]"
                if "p_at_5_vs_prior" in m
                else "-"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def examples_markdown(data: TagData, rows: np.ndarray, predictions: dict[str, Tags]) -> str:
    """The paper's Table 2: image, user tags, generated tags per method."""
    names = list(predictions)
    lines = ["| image | user tags | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
    for i, r in enumerate(rows):
        cells = [", ".join(w for w, _ in predictions[n][i][:5]) for n in names]
        lines.append(f"| `{data.ids[r]}` | {', '.join(data.tags[r])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def caption(head: str, words: list[str], lines: int, width: int = 37) -> list[str]:
    """`head` and the words, wrapped at word boundaries into at most `lines` lines of `width` characters
    (a cell's width); what does not fit ends in "..." rather than a cut word."""
    return textwrap.wrap(head + ", ".join(words), width, max_lines=lines, placeholder=" ...") or [head]


def examples_grid(
    paths: list[str],
    user: list[list[str]],
    generated: list[list[str]],
    out: Path,
    label: str = "gan",
    cell: int = 224,
    cols: int = 4,
) -> None:
    """PNG grid of test images captioned with user tags and generated tags."""
    from PIL import Image, ImageDraw

    caption_h = 44
    n = len(paths)
    rows = max(1, (n + cols - 1) // cols)
    grid = Image.new("RGB", (cols * cell, rows * (cell + caption_h)), "white")
    draw = ImageDraw.Draw(grid)
    for i, path in enumerate(paths):
        x, y = (i % cols) * cell, (i // cols) * (cell + caption_h)
        try:
            im = load_image(path, max_side=cell)
            im.thumbnail((cell, cell))
            grid.paste(im, (x + (cell - im.width) // 2, y + (cell - im.height) // 2))
        except Exception as e:  # a missing image leaves its cell blank
            log.warning("examples grid: cannot read %s (%s)", path, e)
        draw.text((x + 3, y + cell + 2), caption("user: ", user[i], 1)[0], fill=(90, 90, 90))
        for k, line in enumerate(caption(f"{label}: ", generated[i], 2)):
            draw.text((x + 3, y + cell + 16 + 14 * k), line, fill=(0, 0, 160))
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        grid.save(tmp, format="PNG")


def write_reports(
    out: Path,
    tables: dict[str, dict[str, dict[str, float]]],
    data: TagData,
    test: np.ndarray,
    preds: dict[str, Tags],
    *,
    samples: int,
    neighbors: int,
    top_k: int,
    examples: int,
    seed: int,
) -> None:
    """tag_eval_table.md (all methods, both splits), tag_examples.md and tag_examples.png."""
    out = Path(out)
    text = [
        "# Tag evaluation (test split)\n",
        f"Decoding for `cgan_*`: the paper's {samples} samples, {neighbors} neighbours each, top {top_k};"
        " `*_tuned`: neighbours and vote weighting chosen on val. mAP is AP over each method's top-"
        f"{top_k} list. Coverage: distinct tags in the top-5 lists. Diversity: 1 - mean cosine between"
        " an image's generated vectors. P@5 - prior: the margin over the frequency prior on the same images,"
        " with a 95% interval from resampling whole test groups (folders): an interval that holds 0 is no margin.\n",
        "## Group split (headline: test groups unseen in training)\n",
        results_table(tables["split"]),
    ]
    if "split_image" in tables:
        text += [
            "\n## By-image split (near-duplicates leak across splits; flatters every method)\n",
            results_table(tables["split_image"]),
        ]
    write_text(out / "tag_eval_table.md", "\n".join(text))
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(test), size=min(examples, len(test)), replace=False))
    names = [n for n in ("cgan_strong_tuned", "cgan_paper", "knn", "classifier") if n in preds]
    sample_preds = {n: [preds[n][i] for i in pick] for n in names}
    write_text(
        out / "tag_examples.md",
        "# Generated tags for a fixed sample of test images (group split)\n\n"
        + examples_markdown(data, test[pick], sample_preds),
    )
    gan = names[0]
    examples_grid(
        [data.paths[test[i]] for i in pick],
        [data.tags[test[i]] for i in pick],
        [[w for w, _ in preds[gan][i]] for i in pick],
        out / "tag_examples.png",
        label=gan.replace("_tuned", ""),
    )
