"""Maps the repository's top-level folders into one installed namespace.

The repository keeps the user's layout (`server/`, `engines/`, `openapi/` at the top);
installed, they become `evaldock.server`, `evaldock.engines` and `evaldock.openapi`,
so nothing as generic as `server` lands in site-packages.
"""

from setuptools import find_packages, setup

ROOTS = ("server", "engines", "openapi")

packages = [
    f"evaldock.{name}"
    for name in find_packages(include=[f"{root}" for root in ROOTS] + [f"{r}.*" for r in ROOTS])
]

setup(
    packages=packages,
    package_dir={f"evaldock.{root}": root for root in ROOTS},
    package_data={
        "evaldock.openapi": ["*.yaml"],
        "evaldock.server": ["migrations/*.sql"],
        "evaldock.engines": ["**/*.txt", "**/*.json", "**/*.toml"],
    },
    include_package_data=True,
)
