"""Deploy tier: the deployment files are valid, agree with the service, and boot.

- helpers.py: kustomize builds, the Kubernetes objects' parts, the service's own commands.
- commands.py: each role's argv and environment read out of compose.yaml or a kustomize build.
- boot_environment.py (test_deploy_boot.py): what a container adds (the Dockerfile's runtime
  ENV), the throwaway servers the files' URLs are pointed at, and every change a local run
  makes to a role, recorded.
- boot_launch.py (test_deploy_boot.py): start every role with the argv and environment read
  from compose.yaml or the kustomize build, run the files' own health checks and probes,
  stop everything by PID.
"""
