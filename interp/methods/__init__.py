"""Interpretability methods: probes by layer (probes), difference-of-means directions (directions), steering and alpha-curves (steering), base-vs-adapter comparison (compare)."""
