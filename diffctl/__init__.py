"""diffctl: differentiable training controllers for a dual ternary VAE.

The science layer: data, model, loss terms, the arms that set loss weights and rho, metrics and one training
loop. It imports torch, never Ray, Optuna or pandas (those live in ``study`` and ``analysis``).
"""

__version__ = "0.1.0"
