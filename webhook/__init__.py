"""Admission webhooks: `POST /mutate` for pods (SPEC §3), `POST /validate` for stork's resources (SPEC §4)."""
