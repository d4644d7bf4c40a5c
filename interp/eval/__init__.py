"""Evaluation: BBQ metrics with one bootstrap (metrics), letter answers by logits or generation (evaluate), scoring published predictions (score)."""
