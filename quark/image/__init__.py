"""Quark's text-to-image model: data (folders, the procedural shapes set), training through the one
Trainer, generation with PNG provenance, the prompt safety filter and the adherence evaluation.
The architecture itself (the diffusers pipeline) lives in quark.models.diffusion."""
