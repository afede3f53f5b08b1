"""What every tier of the template's tests, and benchmarks/, share.

- variants.py: the variant list (tests/variants.yml), copier.yml's questions and defaults.
- params.py: parametrize a test over the supported variants, or those with a feature.
- rendering.py: render the template, run a command in a rendered project, `uv sync` a copy.
- processes.py: start a process in a session of its own, watch it through /proc, stop it by
  PID; bounded waits. Standard library only (the benchmark driver imports it too).
- servers.py: throwaway redis-server and RabbitMQ nodes, a vhost on the shared RabbitMQ, a TCP
  proxy to a shared broker, PostgreSQL databases and clusters of the test's own, SQLite files.
- stack.py: a rendered variant installed and booted: migrate, web, workers, beat and Flower.
"""
