"""Running a pipeline over more texts than one machine should take: Dask.

::

    from dask.distributed import Client
    from pydeberta import pipeline
    from pydeberta.distributed import map_pipeline

    client = Client("tcp://scheduler:8786")        # or Client(n_workers=4) on one machine
    fill = pipeline("fill-mask", model="path/to/checkpoint")
    results = map_pipeline(fill, texts, client=client, partition_size=512, batch_size=64)

Why Dask (the ``pydeberta[dask]`` extra): it is pure Python, installs in seconds, runs the same
code on a laptop's processes and on a cluster, and its scheduler re-runs the tasks of a worker
that dies. Ray Data does the same job with a heavier runtime; ``docs/distributed.md`` gives the
recipe for it.

How it works: the texts are cut into partitions of ``partition_size``; each partition is one
task that calls the pipeline on its texts (batched by length, :mod:`pydeberta.pipelines.base`).
The pipeline travels to the workers pickled: its model as the folder it was loaded from plus a
digest of its weights (:mod:`pydeberta.sharing`), so each worker process loads the model once
and checks that its folder holds the same weights. Results come back in the input order. A
worker killed mid-run loses nothing: the scheduler runs its partitions again on another worker
(up to Dask's ``distributed.scheduler.allowed-failures`` times per partition).
"""

import contextlib


def require_dask():
    """Import Dask's bag and distributed modules, or raise an ImportError naming the extra."""
    try:
        import dask.bag
        import distributed
    except ImportError as error:
        raise ImportError(f"pydeberta.distributed needs Dask: pip install 'pydeberta[dask]' ({error})") from None
    return dask.bag, distributed


@contextlib.contextmanager
def connect(address):
    """A ``distributed.Client`` for ``address``, closed on leaving the ``with`` block: a
    scheduler address (``tcp://host:8786``), or ``local:N`` for a cluster of N worker processes
    on this machine, one thread each, started here and closed with the client."""
    _, distributed = require_dask()
    if not address.startswith("local:"):
        with distributed.Client(address) as client:
            yield client
        return
    workers = address[len("local:"):]
    if not workers.isdigit() or int(workers) < 1:
        raise ValueError(f"a local Dask cluster is 'local:N' with N >= 1 worker processes, got {address!r}")
    with distributed.LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        yield client


def run_partition(texts, pipe, batch_size, options):
    """The pipeline's results for one partition's texts: a list, one result per text."""
    return pipe.map(texts, batch_size=batch_size, **options)


def map_pipeline(pipe, texts, *, client=None, partition_size=256, batch_size=None, compute=True, **options):
    """Run ``pipe`` over ``texts`` on a Dask cluster; one result per text, in order.

    Args:
        pipe: a pydeberta pipeline (:func:`pydeberta.pipeline`).
        texts: a sequence of the pipeline's inputs (texts, or dicts for pairs and QA), or a
            ``dask.bag.Bag`` of them.
        client: a ``distributed.Client``; None uses the current one (``Client(...)`` made
            earlier in this process), or Dask's local scheduler when there is none.
        partition_size: inputs per task (a bag keeps its own partitions).
        batch_size: rows per model call inside a task (the pipeline's own when None).
        compute: False returns the lazy ``dask.bag.Bag`` of the results instead (to compute
            later, save with ``to_textfiles``, or combine with other work).
        **options: the task's options (``top_k`` ...), as for a call of ``pipe``.
    Returns:
        A list of the results, as ``pipe`` returns them for each input alone (or the Bag).
    """
    bag_module, _ = require_dask()
    if isinstance(partition_size, bool) or not isinstance(partition_size, int) or partition_size < 1:
        raise ValueError(f"partition_size must be an int >= 1, got {partition_size!r}")
    bag = texts if isinstance(texts, bag_module.Bag) else bag_module.from_sequence(list(texts),
                                                                                  partition_size=partition_size)
    results = bag.map_partitions(run_partition, pipe, batch_size, options)
    if not compute:
        return results
    if client is not None:
        return client.compute(results).result()
    return results.compute()
