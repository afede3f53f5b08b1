"""The benchmark scenarios, one module each; driver.py runs them in this order.

- throughput.py: N no-op tasks queued first, then one worker drains them (STOCK, GENERATED,
  PROFILE).
- head_of_line.py: short tasks queued behind long ones (hol1, hol3).
- worker_loss.py: a prefork child or the main process SIGKILLed mid-task (Redis and RabbitMQ).
- boot.py: every role of the generated service started at once: time to ready, HTTP round
  trips, the cost of the liveness probe.
"""
