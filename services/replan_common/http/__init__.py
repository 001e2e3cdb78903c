"""HTTP helpers shared by every FastAPI service: error envelope, request ids, metrics, health, clients."""
