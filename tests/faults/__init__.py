"""Helpers of the fault tier (tests/test_faults.py).

- postgres.py: a throwaway PostgreSQL cluster (initdb/pg_ctl) the test may stop and start.
- observe.py: submit jobs over HTTP, read their rows from the database, watch them settle.
- resend.py: a script run with the service's own interpreter that re-sends job tasks through
  the worker app's send_task (a redelivery on demand).
- report.py: the per-variant figures, printed as a table and written as JSON.
"""
