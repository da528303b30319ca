"""planner: capacity planning for large-model training."""
