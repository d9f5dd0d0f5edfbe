"""YAML recipes, shipped as package data; `quark.recipes_path(name)` finds one by name."""
