"""The phases of a study, one module each; each imports the spec (``study.spec``) and the trial files
(``study.trialdir``), never another phase (an import-linter contract checks it).

Two searching phases, which decide what to train as results come in:

- ``search``: an Optuna arm's search (its space, TPE sampler, Optuna study) and its early stopping;
- ``pbt``: a PBT arm's population in a Tuner of its own, and the schedule of its best member.

Planned phases, which plan their runs in one go once the runs they are made from have ended; each offers the same
small interface, ``plan(spec, study_dir, arm) -> study.spec.plan.Planned`` (the Ray configs of its runs and the
notes it reports):

- ``confirm``: each arm's selected configuration on the confirmation seeds, once the arm's search has ended;
- ``distill``: an adaptive arm's distilled baselines, once its confirmation runs have ended;
- ``ablate``: the options around the ablated arm's confirmed configuration, once its confirmation runs have ended.

``study.searcher`` asks them in that order for the study's one Tune experiment.
"""
