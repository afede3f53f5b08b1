"""The example domain: jobs submitted over HTTP (api), stored (store, models), run (tasks).

Copy this folder for a domain of your own; delete it once you have one.
"""
