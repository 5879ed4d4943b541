"""The phases of a study, one module (or package) each, every one a :class:`~study.phases.base.Phase`: its places
(one per arm label, each waiting for the places it is made from), the most trials each can run, the runs it plans
as :class:`~study.phases.base.TrialRequest` s, what its runs record, whether they evaluate the held-out test split,
and what it cleans up after the study's Tuners. Each imports the spec (``study.protocol``), the trial files
(``study.trialdir``) and ``base``, never another phase (an import-linter contract checks it);
``study.phases.registry`` lists them in the order their places are asked for, and takes phases of one's own.

- ``search`` (``base.SearchPhase``): every arm, by its search method (``base.SearchMethod``) — ``search``:
  Optuna's TPE asked in batches inside the study's Tuner, stopped early by ``search.pruner``; ``pbt``: a
  population in Tuners of its own before it;
- ``front``: the fixed-λ front's grid of constant settings, waiting for nothing;
- ``confirm``: each arm's picks on the confirmation seeds, once its search (and the front) has ended;
- ``audit``: stopped search trials trained to the end, once the arm's search has ended;
- ``distill``: an adaptive arm's distilled baselines, once its confirmation has ended;
- ``retune``: an ablation option's own small search, once the ablated arm's confirmation has ended;
- ``ablate``: the options around the ablated arm's confirmed configuration, after their retune if any.
"""
