"""One ECOS round as one process of a `distributed.launch_local` group (see
test_multiprocess.py): each process builds only its own rows; process 0 saves the results.

  python tests/multidevice/round_worker.py OUT.npz
"""

import sys

import jax
import numpy as np

from ecos_jax import distributed, scaling, sharding
from ecos_jax.sharded_selection import sharded_ecos_select

# The round's sizes; test_multiprocess.py computes the single-process reference from them.
POOL_ROWS, CLIENT_ROWS, DIM, K, BUDGET, ITERS = 3001, 503, 8, 12, 300, 30


def main(out: str) -> None:
    mesh = sharding.make_mesh()
    rows = {}
    for name, seed, n in (("pool", 0, POOL_ROWS), ("client", 1, CLIENT_ROWS)):
        start, stop = sharding.process_row_range(n, mesh)
        local = scaling.blob_rows(seed, start, stop, dim=DIM, num_blobs=16)
        rows[name] = sharding.shard_process_rows(local, num_rows=n, mesh=mesh)
    res = sharding.sharded_kmeans(jax.random.key(1), rows["pool"], k=K, mesh=mesh, num_iters=ITERS)
    counts = sharding.sharded_coverage_scores(rows["client"], res.centroids, mesh=mesh).counts
    picks = sharded_ecos_select(
        rows["pool"], res.assignments, res.centroids, counts.astype(np.float64),
        mesh=mesh, budget=BUDGET,
    )  # fmt: skip
    assignments = sharding.gather_to_host(res.assignments)[:POOL_ROWS]
    if jax.process_index() == 0:
        np.savez(
            out,
            processes=jax.process_count(),
            devices=jax.device_count(),
            assignments=assignments,
            centroids=sharding.gather_to_host(res.centroids),
            num_iters=int(res.num_iters),
            counts=counts,
            picks=picks,
        )


if __name__ == "__main__":
    if not distributed.initialize_from_env():  # before JAX touches a device
        sys.exit("round_worker.py runs under distributed.launch_local (ECOS_* variables unset).")
    main(sys.argv[1])
