"""awkgen's comparative benchmark suite: ``make bench`` (``python -m benchmarks.run``).

awkgen's three generators (blocking, thread pool, process pool) against Keras 3
``PyDataset``, PyTorch ``DataLoader``, ``tf.data`` and Grain, on the same machine in
the same run, over seven scenarios (latency-, bandwidth- and CPU-bound loaders, tiny
batches, time to first batch, overlap with ``model.fit``, memory).

- :mod:`benchmarks.loaders`     the loaders every contender runs (module-level, numpy only)
- :mod:`benchmarks.contenders`  one adapter per contender: ``start`` / ``fit_input`` / ``close``
- :mod:`benchmarks.scenarios`   what each scenario measures, its limits and targets
- :mod:`benchmarks.proctree`    the process tree from ``/proc``: memory, leftover workers, machine
- :mod:`benchmarks.report`      ``results.json``, ``results.md``, ``results.png``
- :mod:`benchmarks.run`         the command line; :mod:`benchmarks.soak` the soak test (``make soak``)
"""
