"""awkgen's comparative benchmark suite: ``make bench`` (``python -m benchmarks.run``).

awkgen's three generators (blocking, thread pool, process pool) against Keras 3
``PyDataset``, PyTorch ``DataLoader``, ``tf.data`` and Grain, each peer in every
configuration its documentation recommends (its best one counts), on the same machine in
the same run, in interleaved rounds, over nine scenarios (latency-, bandwidth- and
CPU-bound loaders, tiny batches, JPEG decoding, cold start, overlap with ``model.fit``,
memory, 1 M path ids).

- :mod:`benchmarks.loaders`     the loaders every contender runs (module-level, numpy only)
- :mod:`benchmarks.contenders`  one adapter per contender: ``start`` / ``fit_input`` / ``close``
- :mod:`benchmarks.scenarios`   what each scenario measures, its limits and targets
- :mod:`benchmarks.proctree`    the process tree from ``/proc``: memory, leftover workers, machine
- :mod:`benchmarks.report`      ``results.json``, ``results.md``, ``results.png``
- :mod:`benchmarks.pathids`     the path-ids scenario, one contender per fresh interpreter
- :mod:`benchmarks.profile_costs` where awkgen's process backend spends bandwidth and tiny batches
- :mod:`benchmarks.run`         the command line; :mod:`benchmarks.soak` the soak test (``make soak``)
"""
