"""Shared core of stork-py: the storage model, cluster caches and storage drivers.

The webhook, the extender and the controller all read cluster state through
`storkcore.cluster.ClusterState` and ask a `storkcore.drivers.Driver` the four
questions of the storage model (owns, volume, nodes, node).
"""
