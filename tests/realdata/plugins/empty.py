"""A task module that registers nothing (bad input for ``--task-module``)."""

VALUE = 1
