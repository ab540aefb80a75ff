"""The stack on Kubernetes: kustomize manifests (base/, overlays/) and the tools that derive what
can be derived from docker-compose.yml and .env.example (`make k8s-config`, `make k8s-secrets`)."""
