"""Metrics in one place: generative-model metrics (Parzen, Frechet) and tagging metrics."""

from __future__ import annotations

# --- generative models (MNIST): Parzen-window log-likelihood, Frechet distance -----------------

# --- tagging: precision/recall@k, mAP, coverage, diversity ---------------------------------------
