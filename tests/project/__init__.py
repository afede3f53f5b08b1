"""Project tier: each rendered variant's own `uv sync`, ruff and test suite pass."""
