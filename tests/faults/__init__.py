"""Fault tier (test_faults.py): kill workers, restart the broker, stop the database.

- observe.py: submit jobs over HTTP, read their rows from the database, watch them settle.
- resend.py: a script run with the service's own interpreter that re-sends job tasks through
  the worker app's send_task (a redelivery on demand).
- report.py: the per-variant figures, printed as a table and written as JSON.

The booted stack and the PostgreSQL cluster it may stop are in tests/support/.
"""
