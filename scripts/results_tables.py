"""Print the README's results tables (markdown) from the committed metrics/*.json of the last dvc repro."""

from __future__ import annotations

import json
from pathlib import Path

METRICS = Path(__file__).resolve().parents[1] / "metrics"


def load(name: str) -> dict:
    path = METRICS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def mnist_table() -> str:
    rows = [
        "| model | Parzen LL (nats) | conditional accuracy | within-class std (real) | Frechet distance (real floor) "
        "| train s | selected step |",
        "|---|---|---|---|---|---|---|",
        "| GAN (Goodfellow et al. 2014, paper) | 225 ± 2 | - | - | - | - | - |",
        "| CGAN (Mirza & Osindero 2014, paper) | 132 ± 1.8 | - | - | - | - | - |",
    ]
    for preset in ("paper", "strong"):
        m = load(f"mnist_cgan_{preset}")
        if m:
            rows.append(
                f"| tagan CGAN `{preset}` | {fmt(m.get('parzen_ll'))} ± {fmt(m.get('parzen_se'))} "
                f"(σ={fmt(m.get('parzen_sigma'), '.2f')}) | {fmt(m.get('conditional_accuracy'), '.3f')} | "
                f"{fmt(m.get('within_class_std'), '.3f')} ({fmt(m.get('within_class_std_real'), '.3f')}) | "
                f"{fmt(m.get('fid'), '.2f')} ({fmt(m.get('fid_real_floor'), '.2f')}) | "
                f"{fmt(m.get('train_seconds'), '.0f')} | {m.get('selected_step', '-')} |"
            )
        if m and "untruncated_parzen_ll" in m:  # the same weights sampled at noise spread 1.0
            rows.append(
                f"| tagan CGAN `{preset}`, same weights untruncated (spread 1.0 instead of "
                f"{fmt(m.get('sample_scale'), '.1f')}) | {fmt(m.get('untruncated_parzen_ll'))} ± "
                f"{fmt(m.get('untruncated_parzen_se'))} (σ={fmt(m.get('untruncated_parzen_sigma'), '.2f')}) | "
                f"{fmt(m.get('untruncated_conditional_accuracy'), '.3f')} | "
                f"{fmt(m.get('untruncated_within_class_std'), '.3f')} | {fmt(m.get('untruncated_fid'), '.2f')} | - | - |"
            )
    m = load("dcgan_mnist")
    if m:
        rows.append(
            f"| tagan DCGAN (unconditional) | {fmt(m.get('parzen_ll'))} ± {fmt(m.get('parzen_se'))} | - | - | "
            f"{fmt(m.get('fid'), '.2f')} ({fmt(m.get('fid_real_floor'), '.2f')}) | "
            f"{fmt(m.get('train_seconds'), '.0f')} | - |"
        )
    return "\n".join(rows)


def dcgan_table() -> str:
    sets = {name: load(f"dcgan_{name}") for name in ("mnist", "fashion")}
    rows = [
        "| features (linear L2-SVM, 1000 labels; C chosen by 5-fold CV) | MNIST | Fashion-MNIST |",
        "|---|---|---|",
    ]

    def cell(m: dict, key: str) -> str:
        acc = m.get(f"{key}_accuracy")
        return "-" if acc is None else f"{100 * acc:.2f}% (C={m.get(f'{key}_c', 0):g})"

    for key, label in (
        ("svm_dcgan", "DCGAN discriminator, conv layers 2+3 max-pooled 4x4 (trained)"),
        ("svm_random_d", "same layers, random-init discriminator (baseline)"),
        ("svm_dcgan_all_layers", "DCGAN discriminator, every conv layer (the paper's protocol, trained)"),
        ("svm_random_d_all_layers", "every conv layer, random-init discriminator"),
        ("svm_raw_pixels", "raw pixels (baseline)"),
    ):
        rows.append(f"| {label} | {cell(sets['mnist'], key)} | {cell(sets['fashion'], key)} |")
    for key, label in (
        ("svm_margin_over_random_d", "**margin over the random D, layers 2+3 (points)**"),
        ("svm_all_layers_margin_over_random_d", "margin over the random D, every layer (points)"),
    ):
        margins = [sets[name].get(key) for name in sets]
        rows.append(
            f"| {label} | " + " | ".join(fmt(None if v is None else 100 * v, "+.2f") for v in margins) + " |"
        )
    return "\n".join(rows)


def classifier_line() -> str:
    m = load("mnist_classifier")
    return f"MNIST judge classifier: test accuracy {fmt(m.get('test_accuracy'), '.4f')}"


if __name__ == "__main__":
    print(mnist_table(), "", dcgan_table(), "", classifier_line(), sep="\n")
