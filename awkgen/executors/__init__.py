"""Executors run loader calls; one module per backend behind one interface (``base``).

- ``serial``: in the caller (``DataGenerator``);
- ``thread``: a pool of threads, for loaders that release the GIL;
- ``process``: persistent worker processes with a shared-memory transport;
- ``ray``: Ray actors on a Ray cluster.
"""
