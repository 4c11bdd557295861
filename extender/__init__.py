"""The kube-scheduler extender: `POST /filter` and `POST /prioritize` (SPEC §5)."""
