"""Train / validation / test splits of the labelled pixels: one module per strategy.

Each strategy module (`random`, `per_class`, `disjoint`, `mask`, `fixed`) holds its settings
dataclass (a `base.SplitStrategy` with its `method` and its one-line `no_test_fix`) and the
function that does its work; `registry` finds them and builds one from `data.split`.
`block_assignment` cuts the disjoint split's spatial blocks; `leakage` audits any split. Nothing is
imported here, so reading one strategy does not load the others.
"""
