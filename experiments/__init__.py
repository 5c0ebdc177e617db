"""Experiments over executors (not executors themselves): the backoff sweep and the
co-resident compute kernel it measures against."""
