"""Package discovery. commands/, tui/, models/ and recipes/ sit at the top of the repo (the CLI, the
TUI, the neural architectures and the shipped recipes, each findable at a glance) but install
inside the quark namespace, so `quark` is the only top-level import name."""

from setuptools import find_packages, setup

MAPPED = {"quark.commands": "commands", "quark.tui": "tui", "quark.models": "models", "quark.recipes": "recipes"}

packages = find_packages(include=["quark", "quark.*"])
package_dir = {"quark": "quark", **MAPPED}
for package, folder in MAPPED.items():
    packages.append(package)
    packages += [f"{package}.{sub}" for sub in find_packages(where=folder)]

setup(packages=packages, package_dir=package_dir)
