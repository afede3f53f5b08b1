"""Helpers of the boot tier (tests/test_boot.py): servers, processes and one booted stack.

- servers.py: a throwaway redis-server, a throwaway rabbitmq-server (or a vhost of its own on
  the shared RabbitMQ), a PostgreSQL database of its own or an SQLite file.
- processes.py: start a role with its argv and environment, log to a file, stop it by PID.
- stack.py: render + `uv sync` a variant, then boot migrate, web, workers, beat and Flower.
"""
