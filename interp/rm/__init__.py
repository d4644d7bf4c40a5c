"""Reward-model debiasing by neuron-level intervention (Shinoda et al., ACL 2026): attributes, scoring,
neuron finding, median intervention, baselines, evaluation and a locally trained RM organism."""
