"""`supernet study`: does a search beat random picks and hand-designed baselines at the same latency?

- ``config``: the study's YAML, validated (errors name the field);
- ``plan``: the space at the study's width, the latency table and budgets, random paths within a
  budget, the arguments of every run;
- ``execute``: the runs, as the ordinary commands, finished ones skipped, several side by side;
- ``rank``: the supernet's own scores (inherited weights) and Kendall's tau;
- ``report``: the rows, ``study.json``, ``study.md`` and the plots;
- ``pipeline``: the stages in order (``run_study``).
"""
