"""Text to 3D through a validated scene program, and the mesh tools (SPEC §9)."""
