"""Task modules; only the worker and beat import them all (celery_apps.TASK_MODULES)."""
