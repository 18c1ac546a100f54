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
    # Specs, migrations, prompt templates and model configs travel inside the wheel.
    package_data={
        "": [
            "*.yaml",
            "migrations/*.sql",
            "prompts/*.txt",
            "*.json",
            "*.toml",
            "example/*",
            # The dashboard's templates and its stylesheet and script (no CDN).
            "templates/*.html",
            "static/*.css",
            "static/*.js",
        ]
    },
    include_package_data=True,
)
