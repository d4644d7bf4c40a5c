"""The activation store: per-layer activations in HDF5, streamed, resumable and fingerprinted (activations)."""
