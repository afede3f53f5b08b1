"""Task modules; only the worker and beat import them all (celery.apps.TASK_MODULES)."""
