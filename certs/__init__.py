"""Certificates for the webhooks (SPEC §8): a CA and a serving certificate, stored in a
Secret, with the CA bundle injected into the webhook configurations."""
