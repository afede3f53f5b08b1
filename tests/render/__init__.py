"""Render tier: every variant renders clean files; variants, CI, README and docs agree."""
