"""The parameter files shipped with deepradiomics (installed as the package data ``deepradiomics.data.params``).

This folder holds YAML files only; it is a package so that the installer copies it into the package, where
``deepradiomics params`` and every command that takes a params file find them by name
(``deepradiomics extract classical IMAGE MASK``).
"""
