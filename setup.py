"""Maps the repository layout onto the import package `sweeplab`.

The core lives in `platform/sweeplab/` and each paper's task in `tasks/<name>/`; installed, they are `sweeplab`
and `sweeplab.tasks.<name>`. Task packages are found by walking `tasks/`, so adding a task touches no file here.
`platform/` itself has no `__init__.py`, so it never shadows the standard library's `platform` module, even when
the repository root is on `sys.path`.
"""
from setuptools import find_packages, setup

task_packages = [f"sweeplab.tasks.{p}" for p in find_packages("tasks")]
setup(
    packages=["sweeplab", "sweeplab.tasks", *task_packages],
    package_dir={"sweeplab": "platform/sweeplab", "sweeplab.tasks": "tasks"},
    package_data={"": ["*.yaml", "*.png"]},
)
