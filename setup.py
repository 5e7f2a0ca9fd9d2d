"""Packaging beyond pyproject.toml: the shipped models. They live in the repository's top-level
models/ (where the README and the model card point); a wheel carries them as the package data
`animesr/shipped_models/`, where `animesr.pretrained` finds them."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["animesr", "animesr.*"]), "animesr.shipped_models"],
    package_dir={"animesr.shipped_models": "models"},
    package_data={"animesr.shipped_models": ["*.safetensors", "README.md"]},
)
