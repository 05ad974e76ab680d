"""Experiments that test the mechanism behind surgical fine-tuning.

:mod:`realdata.experiments.noise_in_block` (perturb one block of a source model, tune each option on
source data), :mod:`realdata.experiments.size_curve` (accuracy against the number of labelled
target examples); both judge with :func:`realdata.summary.paired_verdict`, the paired verdict of
the benchmark's own verdicts.
"""
