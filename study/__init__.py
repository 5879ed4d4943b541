"""study: the experiment layer — study specs, the define-by-run Optuna space, the Ray Tune trainable that wraps
diffctl's training loop, launching, resuming and progress of a study.

Imports diffctl, Ray and Optuna (never pandas). The study directory it writes is described in ``LAYOUT.md``;
``analysis`` reads it without a running Ray.
"""
