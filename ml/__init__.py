"""The learning side of fednode, and the only package that imports torch.

``data`` (datasets, test split, partitions across hospitals), ``models`` (specs and torch modules),
``params`` (flat float32 parameter vectors and their hashes), ``train`` (local training, evaluation,
deterministic FedAvg), ``robust`` (rules on revealed statistics; pure numpy), ``attacks`` (poisoning
tooling) and ``simulation`` (the in-process plaintext federation reference). Importing the package
itself imports nothing heavy, so ``ml.robust`` stays torch-free.
"""
