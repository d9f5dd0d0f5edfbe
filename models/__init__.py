"""Architectures: the decoder LLM (more — embedding head, diffusion wrapper, text-to-mesh — join here)."""
