"""Helpers of tests/test_deploy_boot.py: boot a variant from its own deployment files.

- environment.py: what a container adds (the Dockerfile's runtime ENV), the throwaway servers
  the files' URLs are pointed at, and every change a local run makes to a role, recorded.
- launch.py: start every role with the argv and environment read from compose.yaml or the
  kustomize build, run the files' own health checks and probes, stop everything by PID.
"""
