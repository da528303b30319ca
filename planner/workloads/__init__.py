"""Workloads: what is planned (training today), each giving the search its space and its models."""
