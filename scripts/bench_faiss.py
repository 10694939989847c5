"""Benchmark approximate FAISS indexes (HNSW, IVF-PQ) against exact IndexFlatIP on a synthetic vocabulary.

The vocabulary is clustered unit vectors (like word vectors: topical neighbourhoods, not uniform on
the sphere); queries are fresh draws from the same mixture (like generated tag vectors, which lie
near, not on, vocabulary words). Reports recall@k against the exact top-k, queries per CPU-second,
index size and build CPU time (CPU time: robust to other processes sharing the machine), as JSON
and a Markdown table.

    python scripts/bench_faiss.py --n 1000000 --threads 1 --out reports/bench_faiss_1m
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

log = logging.getLogger("bench_faiss")


def synthetic_vocabulary(n: int, dim: int, n_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Clustered unit vectors: vocabulary (n, dim) and queries (n_queries, dim), float32."""
    rng = np.random.default_rng(seed)
    n_clusters = max(10, n // 500)
    centers = rng.standard_normal((n_clusters, dim), dtype=np.float32)  # (K, D)

    def draw(m: int) -> np.ndarray:
        out = np.empty((m, dim), np.float32)
        for lo in range(0, m, 100_000):  # chunks keep the temporaries small
            hi = min(m, lo + 100_000)
            which = rng.integers(0, n_clusters, hi - lo)
            out[lo:hi] = centers[which] + 1.2 * rng.standard_normal((hi - lo, dim), dtype=np.float32)
        faiss.normalize_L2(out)
        return out

    return draw(n), draw(n_queries)


def index_bytes(index: faiss.Index) -> int:
    """Size of the serialised index (what it holds in memory, to within small overheads)."""
    return int(faiss.serialize_index(index).nbytes)


def timed_search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """Top-k ids (Q, k) and queries per CPU-second (batched search, as tag decoding does).

    CPU time, not wall time: on a shared machine it measures what one dedicated core delivers.
    """
    t0 = time.process_time()
    _, ids = index.search(queries, k)
    return ids, len(queries) / max(time.process_time() - t0, 1e-9)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of the exact top-k that the approximate top-k contains."""
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def build_hnsw(xb: np.ndarray, m: int, ef_construction: int) -> faiss.Index:
    """HNSW over inner product, as tagan.tagging.index builds it above its exact threshold."""
    index = faiss.IndexHNSWFlat(xb.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    index.add(xb)
    return index


def build_ivfpq(xb: np.ndarray, nlist: int, m: int, train_size: int, seed: int = 0) -> faiss.Index:
    """IVF-PQ over inner product, trained on a sample of the vocabulary."""
    dim = xb.shape[1]
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFPQ(quantizer, dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
    sample = np.random.default_rng(seed).choice(len(xb), min(len(xb), train_size), replace=False)
    index.train(xb[np.sort(sample)])
    index.add(xb)
    return index


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """All measurements for one vocabulary size."""
    faiss.omp_set_num_threads(args.threads)
    xb, xq = synthetic_vocabulary(args.n, args.dim, args.queries, args.seed)
    rows: list[dict[str, Any]] = []

    t0 = time.process_time()
    flat = faiss.IndexFlatIP(args.dim)
    flat.add(xb)
    build = time.process_time() - t0
    truth, qps = timed_search(flat, xq, args.k)
    rows.append(dict(method="exact IndexFlatIP", params="", build_s=build, qps=qps, recall=1.0,
                     mbytes=index_bytes(flat) / 2**20))  # fmt: skip
    log.info("%s", rows[-1])
    del flat

    if "hnsw" in args.methods and args.n <= args.max_hnsw:
        t0 = time.process_time()
        hnsw = build_hnsw(xb, args.hnsw_m, args.ef_construction)
        build = time.process_time() - t0
        size = index_bytes(hnsw) / 2**20
        for ef in args.ef_search:
            hnsw.hnsw.efSearch = ef
            ids, qps = timed_search(hnsw, xq, args.k)
            rows.append(dict(method="HNSWFlat", params=f"M={args.hnsw_m} efC={args.ef_construction} efSearch={ef}",
                             build_s=build, qps=qps, recall=recall_at_k(ids, truth), mbytes=size))  # fmt: skip
            log.info("%s", rows[-1])
        del hnsw

    if "ivfpq" in args.methods:
        nlist = args.nlist or int(4 * np.sqrt(args.n))
        t0 = time.process_time()
        ivf = build_ivfpq(xb, nlist, args.pq_m, train_size=max(40 * nlist, 50_000), seed=args.seed)
        build = time.process_time() - t0
        size = index_bytes(ivf) / 2**20
        for nprobe in args.nprobe:
            ivf.nprobe = nprobe
            ids, qps = timed_search(ivf, xq, args.k)
            rows.append(dict(method="IVFPQ", params=f"nlist={nlist} m={args.pq_m}x8b nprobe={nprobe}",
                             build_s=build, qps=qps, recall=recall_at_k(ids, truth), mbytes=size))  # fmt: skip
            log.info("%s", rows[-1])
            # IVF-PQ candidates re-ranked by exact inner product (needs the raw vectors again).
            refine = faiss.IndexRefineFlat(ivf, faiss.swig_ptr(xb))
            refine.k_factor = 4
            ids, qps = timed_search(refine, xq, args.k)
            rows.append(dict(method="IVFPQ + exact re-rank", params=f"nprobe={nprobe} k_factor=4",
                             build_s=build, qps=qps, recall=recall_at_k(ids, truth),
                             mbytes=size + xb.nbytes / 2**20))  # fmt: skip
            log.info("%s", rows[-1])
    for row in rows:
        row.update(n=args.n, dim=args.dim, k=args.k, threads=args.threads)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| words | index | settings | build CPU s | queries per CPU s | recall@k | MiB |",
        "|---:|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['method']} | {r['params']} | {r['build_s']:.1f} | {r['qps']:,.0f} "
            f"| {r['recall']:.3f} | {r['mbytes']:,.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """CLI: one vocabulary size per call; writes <out>.json and <out>.md."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="vocabulary size")
    ap.add_argument("--dim", type=int, default=200)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", nargs="+", default=["hnsw", "ivfpq"], choices=["hnsw", "ivfpq"])
    ap.add_argument("--hnsw-m", type=int, default=32)
    ap.add_argument("--ef-construction", type=int, default=80)
    ap.add_argument("--ef-search", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--max-hnsw", type=int, default=10_000_000, help="skip HNSW above this size")
    ap.add_argument("--nlist", type=int, default=0, help="IVF lists (0 = 4 sqrt(n))")
    ap.add_argument("--pq-m", type=int, default=50, help="PQ sub-quantizers (dim must be divisible)")
    ap.add_argument("--nprobe", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--out", type=Path, default=None, help="write <out>.json and <out>.md")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    rows = run(args)
    table = markdown(rows)
    log.info("\n%s", table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(table)


if __name__ == "__main__":
    main()
