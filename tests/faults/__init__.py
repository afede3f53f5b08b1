"""Fault tier: kill workers, restart the broker, stop the database, hang and kill the web.

- conftest.py: each broker's variant booted once for every module (harness.py prepares it).
- test_faults.py (1-7), test_bounded_deliveries.py (8), test_web_dies_mid_publish.py (9, 10),
  test_broker_restarts.py (11): docs/faults.md says what each proves.
- observe.py: submit jobs over HTTP, read their rows from the database, watch them settle.
- resend.py, publish_job.py: scripts run with the service's own interpreter that re-send job
  tasks, or store a job and send any task for it.
- poison_task.py: a task that kills its own worker child, copied into the booted project.
- aof.py: where a lost message went, from the Redis broker's append-only file.
- report.py: the per-variant figures, printed as a table and written as JSON.

The booted stack, the PostgreSQL cluster it may stop and the black-hole proxy are in
tests/support/.
"""
