"""What a task package imports: the one public surface of sweeplab for task code.

A task package (``tasks/<name>/``) imports from here and from no other sweeplab module, so the core can be
reorganised behind it::

    from sweeplab.api import Evaluation, Task, param, register_task

* :class:`Task`, :func:`register_task`, :class:`Evaluation`, :class:`TrialContext`: the task contract
  (:mod:`sweeplab.task`); the context also gives ``unwrap(model)`` and ``all_reduce(tensor, op)``.
* :func:`param`, :func:`build`, :func:`fields`: config fields (``folder=True``, ``multiple_of=16``...) and
  building a config from values (:mod:`sweeplab.config`).
* :class:`Needs`, :func:`open_source`: the earlier trials a sweep starts from, and opening one from a sweep's
  tables (:mod:`sweeplab.artifacts`).
* :class:`Paper`, :class:`Published`: the paper's published numbers, for ``sweeplab report``
  (:mod:`sweeplab.paper`).
* :func:`read_image`: an image file as uint8 RGB or luminance (:mod:`sweeplab.images`).
"""
from __future__ import annotations

from .artifacts import Needs, open_source
from .config import build, fields, param
from .images import read_image
from .paper import Paper, Published
from .task import Evaluation, Task, TrialContext, register_task

__all__ = ["Evaluation", "Needs", "Paper", "Published", "Task", "TrialContext", "build", "fields", "open_source",
           "param", "read_image", "register_task"]
