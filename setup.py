"""Package discovery (the rest of the build configuration is in pyproject.toml).

Every folder under mrirecon/ with an __init__.py is found, so a new subpackage cannot be left out
of a wheel, and the top-level conf/ ships inside the package as mrirecon.conf (pyproject.toml maps
it with package-dir and lists its YAML files as package data). pyproject.toml's own `find` cannot
do both: it finds packages in folders named like them, and conf/ is not mrirecon/conf/.
"""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["mrirecon", "mrirecon.*"]), "mrirecon.conf"])
